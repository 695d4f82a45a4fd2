-- Out-of-band approvals are one kind of record whatever reaches the person: the channel says
-- which (the authenticator app now; a phone call later). Every request so far went to the app.
ALTER TABLE challenges ADD COLUMN channel TEXT NOT NULL DEFAULT 'app';
