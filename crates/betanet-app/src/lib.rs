//! betanet-app
