-- Usernames and group names are now found by their PRECIS UsernameCaseMapped form
-- (RFC 8265: full-width letters mapped, case folded, NFC), so that "ａｌｉｃｅ" is "alice".
-- The keys are recomputed in Rust right after this file (sqlite/rekey.rs): SQL has no
-- PRECIS. Plain ASCII names keep the key they had. Two names that now share a key stop
-- the migration with both named; nothing is changed until an administrator picks one.
SELECT 1;
