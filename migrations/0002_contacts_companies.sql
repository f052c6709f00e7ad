-- The B2B data the bulk jobs move: companies, their contacts, and the filter values a UI lists.
CREATE TABLE companies (
    uuid             uuid        PRIMARY KEY,
    name             text        NOT NULL,
    website          text,
    industries       text[]      NOT NULL DEFAULT '{}',
    employees_count  integer     CHECK (employees_count >= 0),
    annual_revenue   bigint      CHECK (annual_revenue >= 0),
    founded_year     integer     CHECK (founded_year BETWEEN 1000 AND 3000),
    country          text,
    state            text,
    city             text,
    phone            text,
    linkedin_url     text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- company_id names a company's uuid; no foreign key, so files may arrive in any order.
CREATE TABLE contacts (
    uuid               uuid        PRIMARY KEY,
    first_name         text,
    last_name          text,
    email              text,
    title              text,
    seniority          text,
    department         text,
    company_id         uuid,
    phone              text,
    country            text,
    state              text,
    city               text,
    linkedin_url       text,
    email_verified_at  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX contacts_company_id_idx ON contacts (company_id);
CREATE INDEX contacts_email_idx ON contacts (lower(email));
CREATE INDEX contacts_country_idx ON contacts (country);
CREATE INDEX companies_country_idx ON companies (country);
CREATE INDEX companies_industries_idx ON companies USING gin (industries);

-- The distinct values of each filterable field, per service ('contact' or 'company').
CREATE TABLE filter_values (
    service     text NOT NULL,
    field       text NOT NULL,
    value       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service, field, value)
);
