-- dim_staff: the current row of every staff member the window touched: those it landed, and
-- everyone in a department it landed (a renamed department renames it for all its staff).
INSERT INTO dim_staff (staff_id, first_name, last_name, department_name, location, email_address, window_name)
SELECT s.staff_id, s.first_name, s.last_name, d.department_name, d.location, s.email_address, %(window)s
FROM staging.staff AS s
LEFT JOIN staging.department AS d ON d.department_id = s.department_id
WHERE s.staff_id IN (SELECT staff_id FROM staging.staff_landed WHERE window_name = %(window)s)
   OR s.department_id IN (SELECT department_id FROM staging.department_landed WHERE window_name = %(window)s)
ON CONFLICT (staff_id) DO UPDATE SET
    first_name = excluded.first_name,
    last_name = excluded.last_name,
    department_name = excluded.department_name,
    location = excluded.location,
    email_address = excluded.email_address,
    window_name = excluded.window_name
WHERE (dim_staff.first_name, dim_staff.last_name, dim_staff.department_name, dim_staff.location,
       dim_staff.email_address)
      IS DISTINCT FROM (excluded.first_name, excluded.last_name, excluded.department_name,
                        excluded.location, excluded.email_address);
