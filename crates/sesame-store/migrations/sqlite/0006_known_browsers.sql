-- A request sent from a browser where the user signed in before carries a keyed hash of that
-- browser's device cookie: the push budget is counted per browser, so someone who only knows a
-- username (from a browser never signed in to) cannot use up the budget of the user's own.
ALTER TABLE challenges ADD COLUMN browser BLOB;
