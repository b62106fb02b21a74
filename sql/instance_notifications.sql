-- What the keyed instance job hands to Python: notifications about an instance whose
-- event type conf/lifecycle.yaml maps (${event_filter} is built from its `events`), so
-- everything else (glance, neutron, keystone, scheduler ...) never leaves the JVM.
SELECT `message_id`, `cell`, `event_type`, `generated`, `request_id`, `instance_id`,
       `format`, `payload`
FROM ${source}
WHERE `instance_id` IS NOT NULL AND `instance_id` <> '' AND (${event_filter})
