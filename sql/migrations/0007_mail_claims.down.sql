DROP TABLE IF EXISTS mail_claims;
