-- Issue 16, item 5: one database server under one spelling. From now on the admin API
-- and `portcullis apply` store `database_servers.address` in the canonical form of
-- shared/src/db-server (RFC 5952 IPv6 in brackets, IPv4-mapped IPv6 as IPv4, host
-- names lower-case A-labels, explicit decimal port). This rewrites the rows stored
-- before, so the unique constraint on `address` means one server again.
--
-- Only bracketed IPv6 rows can be non-canonical: the old rule already lower-cased
-- host names, stripped their trailing dot, refused Unicode and any IPv4 other than
-- four plain decimal octets, and stored the port as a number.
--
-- Two rows that turn out to be one server are NOT merged: that would silently bind
-- one server to two tenants, or drop a binding. The migration stops instead (one
-- transaction: nothing is changed), naming the server and every tenant bound to it;
-- rebind all but one of them, then run the migration again.
CREATE OR REPLACE FUNCTION portcullis_canonical_db_server(address text) RETURNS text
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE
  close_at int;
  port text;
  t text;
  tail text;
  octets int[];
  lhs text[];
  rhs text[];
  groups int[] := '{}';
  g text;
  i int;
  run_start int;
  best_start int := 0;
  best_len int := 0;
  parts text[] := '{}';
BEGIN
  IF left(address, 1) <> '[' THEN
    RETURN address;
  END IF;
  close_at := position(']' in address);
  port := substr(address, close_at + 1);
  -- Postgres' inet validates the address and prints a compressed form, which is not
  -- RFC 5952's in every case (it may end in a dotted IPv4 part): parse it into eight
  -- groups and print those.
  t := host(substr(address, 2, close_at - 2)::inet);
  IF position('.' in t) > 0 THEN
    tail := substring(t from '[^:]*$');
    octets := string_to_array(tail, '.')::int[];
    t := left(t, length(t) - length(tail)) || to_hex(octets[1] * 256 + octets[2]) || ':' || to_hex(octets[3] * 256 + octets[4]);
  END IF;
  IF position('::' in t) > 0 THEN
    lhs := CASE WHEN split_part(t, '::', 1) = '' THEN '{}'::text[] ELSE string_to_array(split_part(t, '::', 1), ':') END;
    rhs := CASE WHEN split_part(t, '::', 2) = '' THEN '{}'::text[] ELSE string_to_array(split_part(t, '::', 2), ':') END;
    lhs := lhs || array_fill('0'::text, ARRAY[8 - coalesce(array_length(lhs, 1), 0) - coalesce(array_length(rhs, 1), 0)]) || rhs;
  ELSE
    lhs := string_to_array(t, ':');
  END IF;
  FOREACH g IN ARRAY lhs LOOP
    groups := groups || ('x' || lpad(g, 8, '0'))::bit(32)::int;
  END LOOP;
  -- IPv4-mapped (::ffff:0:0/96, RFC 4291 §2.5.5.2): the IPv4 server itself.
  IF groups[1:5] = '{0,0,0,0,0}'::int[] AND groups[6] = 65535 THEN
    RETURN (groups[7] >> 8) || '.' || (groups[7] & 255) || '.' || (groups[8] >> 8) || '.' || (groups[8] & 255) || port;
  END IF;
  -- RFC 5952 §4.2: the longest run of two or more zero groups, the first on a tie.
  i := 1;
  WHILE i <= 8 LOOP
    IF groups[i] = 0 THEN
      run_start := i;
      WHILE i <= 8 AND groups[i] = 0 LOOP
        i := i + 1;
      END LOOP;
      IF i - run_start > best_len THEN
        best_start := run_start;
        best_len := i - run_start;
      END IF;
    ELSE
      i := i + 1;
    END IF;
  END LOOP;
  IF best_len < 2 THEN
    FOR i IN 1..8 LOOP
      parts := parts || to_hex(groups[i]);
    END LOOP;
    RETURN '[' || array_to_string(parts, ':') || ']' || port;
  END IF;
  FOR i IN 1..best_start - 1 LOOP
    parts := parts || to_hex(groups[i]);
  END LOOP;
  t := array_to_string(parts, ':') || '::';
  parts := '{}';
  FOR i IN best_start + best_len..8 LOOP
    parts := parts || to_hex(groups[i]);
  END LOOP;
  RETURN '[' || t || array_to_string(parts, ':') || ']' || port;
END
$$;
--> statement-breakpoint
DO $$
DECLARE
  c record;
  found text := '';
BEGIN
  FOR c IN
    SELECT s.canonical,
           string_agg(coalesce('tenant ' || t.slug || ' (' || t.id || ')', 'no tenant') || ' as ' || s.address, ' and ' ORDER BY s.address) AS owners
    FROM (SELECT id, address, portcullis_canonical_db_server(address) AS canonical FROM database_servers) s
    LEFT JOIN database_bindings b ON b.server_id = s.id
    LEFT JOIN tenants t ON t.id = b.tenant_id
    GROUP BY s.canonical
    HAVING count(*) > 1
  LOOP
    found := found || format(' database server %s is bound to %s;', c.canonical, c.owners);
  END LOOP;
  IF found <> '' THEN
    RAISE EXCEPTION USING
      MESSAGE = 'migration 0003_canonical_db_servers: one database server under several spellings:' || found || ' nothing was changed',
      HINT = 'a database server serves at most one tenant: rebind all but one of these tenants (PUT /v1/tenants/:tenant/database), then run the migration again';
  END IF;
END
$$;
--> statement-breakpoint
UPDATE database_servers SET address = portcullis_canonical_db_server(address)
WHERE address <> portcullis_canonical_db_server(address);
--> statement-breakpoint
DROP FUNCTION portcullis_canonical_db_server(text);
