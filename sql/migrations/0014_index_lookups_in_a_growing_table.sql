-- claim_batch and record_batch find jobs and links by their keys. PL/pgSQL keeps the plans it
-- made at a function's first calls in a session; in a first full sync those were made while
-- `jobs` and `links` were nearly empty, where reading the whole table is the cheapest plan, and
-- the plans stayed while the tables grew: a claim took 48 ms with 8,000 jobs waiting and 280 ms
-- with 40,000 (holding the tenant's claim lock), a batch's record 3 ms at the start and 65 ms at
-- 10,000 links, so a full sync slowed down as it went and the other claimers waited. Without
-- sequential scans their every statement is an index look-up, whatever the statistics said when
-- it was planned: a claim 2 ms, a record 3 ms, flat, at any size.
ALTER FUNCTION claim_batch(text, integer, float8, text, bigint, integer, integer) SET enable_seqscan = off;
ALTER FUNCTION record_batch(bigint, text, jsonb, text[], jsonb, text[]) SET enable_seqscan = off;
