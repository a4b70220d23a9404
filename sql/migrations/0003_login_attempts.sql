-- Login throttling also counts per client over every address, and all attempts of the last minute.
CREATE INDEX login_failures_client ON login_failures (client, at);
CREATE INDEX login_failures_at ON login_failures (at);
