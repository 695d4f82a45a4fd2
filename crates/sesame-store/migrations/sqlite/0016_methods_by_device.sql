-- A device's methods are found by device: when it approves (its notification method is last
-- used then) and when it is removed (the cascade). Without an index each was a scan of every
-- method of every user.
CREATE INDEX methods_device ON methods (device_id);
