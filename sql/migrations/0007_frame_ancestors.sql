-- The My Domain of the tenant's org (from its saved Salesforce settings): only that org's pages
-- may show a logged-in user's pages in a frame.
ALTER TABLE tenants ADD COLUMN salesforce_domain text;
