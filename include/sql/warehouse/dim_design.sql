-- dim_design: the current row of every design the window landed.
INSERT INTO dim_design (design_id, design_name, file_location, file_name, window_name)
SELECT d.design_id, d.design_name, d.file_location, d.file_name, %(window)s
FROM staging.design AS d
WHERE d.design_id IN (SELECT design_id FROM staging.design_landed WHERE window_name = %(window)s)
ON CONFLICT (design_id) DO UPDATE SET
    design_name = excluded.design_name,
    file_location = excluded.file_location,
    file_name = excluded.file_name,
    window_name = excluded.window_name
WHERE (dim_design.design_name, dim_design.file_location, dim_design.file_name)
      IS DISTINCT FROM (excluded.design_name, excluded.file_location, excluded.file_name);
