//! Identifier newtypes, so a user id can never be passed where a method id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! id_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub i64);

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// A tenant (organisation); every user, group and policy belongs to one.
    TenantId
);
id_type!(
    /// A user within a tenant.
    UserId
);
id_type!(
    /// A group of users.
    GroupId
);
id_type!(
    /// One registered authentication method of a user.
    MethodId
);
