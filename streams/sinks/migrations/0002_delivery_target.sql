-- What the dispatcher claims by: the limiter's key (webhooks.target_key, NULL for rows
-- queued before this migration) and the dispatcher holding the row's lease.
ALTER TABLE webhook_deliveries ADD COLUMN target_key TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN claimed_by TEXT;
