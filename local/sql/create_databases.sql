-- docker-compose's Postgres runs this once, on an empty volume: the two databases the local
-- stack provides (the embedded Postgres of `make services` creates the same two).
CREATE DATABASE totesys;
CREATE DATABASE warehouse;
