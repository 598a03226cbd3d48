//! Approval records: who approved which evidence, signed with Sigstore
//! over the exact files approved, and verified offline.

pub mod bundle;
pub mod policy;
pub mod record;
pub mod verify;
