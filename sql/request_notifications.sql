-- What the request job hands to Python: every notification that belongs to a request (it
-- carries a request id or a global request id) and every error, even one without a request.
-- The payload crosses to Python only for errors (${error_filter}, built from
-- conf/requests.yaml): the timeline of a request needs no other payload.
SELECT `message_id`, `cell`, `event_type`, `priority`, `service`, `host`, `generated`,
       `request_id`, `global_request_id`, `instance_id`, `tenant_id`,
       CASE WHEN ${error_filter} THEN `payload` END AS `payload`
FROM ${source}
WHERE COALESCE(`request_id`, '') <> '' OR COALESCE(`global_request_id`, '') <> ''
   OR ${error_filter}
