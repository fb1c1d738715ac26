-- dim_staff: the current row of every staff member the window covers: those it
-- landed, and everyone in a department it landed (a renamed department renames all its staff).
-- staging.dim_staff_source builds the row from the newest landed version of each source row, and
-- staging.dim_staff_window says which keys the window covers (migrations/002). A row already as
-- current is left alone, so a rerun or an older window changes nothing.
INSERT INTO dim_staff (staff_id, first_name, last_name, department_name, location, email_address, source_version, window_name)
SELECT s.staff_id, s.first_name, s.last_name, s.department_name, s.location, s.email_address,
       s.source_version, %(window)s
FROM staging.dim_staff_source AS s
WHERE s.staff_id IN (SELECT staff_id FROM staging.dim_staff_window WHERE window_name = %(window)s)
ON CONFLICT (staff_id) DO UPDATE SET
    first_name = excluded.first_name,
    last_name = excluded.last_name,
    department_name = excluded.department_name,
    location = excluded.location,
    email_address = excluded.email_address,
    source_version = excluded.source_version,
    window_name = excluded.window_name
WHERE (dim_staff.first_name, dim_staff.last_name, dim_staff.department_name, dim_staff.location,
       dim_staff.email_address, dim_staff.source_version)
      IS DISTINCT FROM (excluded.first_name, excluded.last_name, excluded.department_name, excluded.location,
                        excluded.email_address, excluded.source_version);
