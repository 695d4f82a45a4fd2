-- Each request of the app to turn phone sign-in on gets a random code, which the app and My
-- security info both show: the person confirms only the request their own app made (one
-- made with a copy of the device key shows another code). Random, so it says nothing about
-- the PIN or its key. Written with the request, replaced by the next, cleared with it.
ALTER TABLE devices ADD COLUMN phone_sign_in_code TEXT;
