-- What a mandate grants (its RFC 9396 authorization details, as JSON), so gateways can
-- filter `tools/list` and delegation can check that a child asks for no more.
ALTER TABLE mandates ADD COLUMN grants TEXT NOT NULL DEFAULT '[]';
