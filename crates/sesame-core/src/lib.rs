//! The Sesame domain, pure: identifiers, the sign-in state machine, one-time-password rules,
//! lockout arithmetic and password hashing parameters. Time and randomness come in as
//! parameters or through the [`clock::Clock`] port; nothing here touches the network or disk.

pub mod access_pass;
pub mod audit;
pub mod clock;
pub mod guessing;
pub mod ids;
pub mod lockout;
pub mod method;
pub mod names;
pub mod password;
pub mod phone;
pub mod policy;
pub mod push;
pub mod secret;
pub mod signin;
pub mod totp;

pub use clock::{Clock, ManualClock, UnixTime};
pub use ids::{ChallengeId, DeviceId, GroupId, MethodId, TenantId, UserId};
