-- Phone sign-in is turned on in two steps: the app asks (proven with the device key and the
-- PIN), and the person confirms on My security info after a fresh sign-in. A copied device key
-- alone can ask, never turn it on. The moment of the app's request waits here until then.
ALTER TABLE devices ADD COLUMN phone_sign_in_requested_at INTEGER;
