-- 009_customer_search: what the agents' customer search (GET
-- /api/v1/customers?q=) walks. Every key is matched exactly or by prefix,
-- and a page is read in the key's order straight off its index: each index
-- holds the key in the "C" collation (byte order, so a LIKE prefix is an
-- index range and the order is the same on every node) followed by the
-- customer, the tie-break of the page order. Names, handles and contacts
-- are matched case-insensitively (lowercased with the database's rules
-- first; contacts are stored lowercased already, but a key no other index
-- has keeps the planner on this one); platform ids are matched exactly.

CREATE INDEX customer_name_prefix ON customer ((lower(display_name) COLLATE "C"), id)
    WHERE merged_into IS NULL;
CREATE INDEX identity_handle_prefix ON identity ((lower(handle) COLLATE "C"), customer_id)
    WHERE handle IS NOT NULL;
CREATE INDEX identity_external_id ON identity (external_id, customer_id);
CREATE INDEX customer_contact_value_prefix ON customer_contact (kind, (lower(value) COLLATE "C"), customer_id);
