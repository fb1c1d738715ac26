-- The window is in the star tables (merge/<table>.sql): its staging rows go (the next window's
-- COPY empties them too). Runs in the merges' transaction.
-- Names besides the database: star_tables (the star's tables, from include/sql/warehouse/star.yml).
{% for table in star_tables %}
DELETE FROM {{ db }}.TOTESYS.{{ table | upper }}_STAGING;
{% endfor %}
