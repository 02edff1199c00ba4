-- Run once by the postgres image when its data volume is new (deploy/compose.yaml):
-- one database per service, as DESIGN.md's "each service owns its own database" asks.
CREATE DATABASE stockfolio_users;
CREATE DATABASE stockfolio_assistant;
CREATE DATABASE stockfolio_terminal;
CREATE DATABASE stockfolio_workspace;
CREATE DATABASE stockfolio_portfolio;
