-- dim_design: the current row of every design the window landed.
-- staging.dim_design_source builds the row from the newest landed version of each source row, and
-- staging.dim_design_window says which keys the window covers (migrations/002). A row already as
-- current is left alone, so a rerun or an older window changes nothing.
INSERT INTO dim_design (design_id, design_name, file_location, file_name, source_version, window_name)
SELECT s.design_id, s.design_name, s.file_location, s.file_name, s.source_version, %(window)s
FROM staging.dim_design_source AS s
WHERE s.design_id IN (SELECT design_id FROM staging.dim_design_window WHERE window_name = %(window)s)
ON CONFLICT (design_id) DO UPDATE SET
    design_name = excluded.design_name,
    file_location = excluded.file_location,
    file_name = excluded.file_name,
    source_version = excluded.source_version,
    window_name = excluded.window_name
WHERE (dim_design.design_name, dim_design.file_location, dim_design.file_name, dim_design.source_version)
      IS DISTINCT FROM (excluded.design_name, excluded.file_location, excluded.file_name,
                        excluded.source_version);
