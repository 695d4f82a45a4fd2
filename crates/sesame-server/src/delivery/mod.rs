//! How requests reach people: the push stream hub (in-process today; several nodes will feed
//! it from PostgreSQL `LISTEN/NOTIFY`), and later the SMS and voice gateways.

pub mod hub;
