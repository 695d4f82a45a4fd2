//! How requests reach people: the push stream hub (in-process today; several nodes will feed
//! it from PostgreSQL `LISTEN/NOTIFY`), and the text and call gateways.

pub mod hub;
pub mod telephony;
