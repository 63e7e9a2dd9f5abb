//! betanet-gateway
