-- The history pages look up one person's audit entries and the tenant's conflicts: without these
-- indexes each search would read the tenant's whole audit log.
CREATE INDEX audit_log_salesforce ON audit_log (tenant_id, salesforce_id) WHERE salesforce_id IS NOT NULL;
CREATE INDEX audit_log_copernica ON audit_log (tenant_id, copernica_id) WHERE copernica_id IS NOT NULL;
CREATE INDEX audit_log_conflicts ON audit_log (tenant_id, at DESC) WHERE action = 'conflict';
