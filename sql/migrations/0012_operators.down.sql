DROP TABLE IF EXISTS audit_log;
DROP TABLE IF EXISTS operator_sessions;
DROP TABLE IF EXISTS operators;
