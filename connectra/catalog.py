"""The two services bulk jobs read and write: their tables, fields and index names. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from connectra.errors import UnknownFieldError, UnknownServiceError


class FieldType(StrEnum):
    """How a field is stored in PostgreSQL, indexed in Elasticsearch and written to CSV."""

    TEXT = "text"
    INTEGER = "integer"
    BIGINT = "bigint"
    TEXT_ARRAY = "text[]"
    UUID = "uuid"
    TIMESTAMP = "timestamptz"


@dataclass(frozen=True, slots=True)
class Field:
    """One column of a service."""

    name: str
    type: FieldType
    required: bool = False
    filterable: bool = False


@dataclass(frozen=True, slots=True)
class ServiceSchema:
    """What a service (`contact` or `company`, a kind of record) is made of: its table, index
    and fields. Not to be confused with `connectra.processors.base.Services`, the outside
    systems (pool, object store, Elasticsearch) a handler talks to."""

    name: str
    table: str
    index: str
    fields: tuple[Field, ...]

    @property
    def field_names(self) -> tuple[str, ...]:
        """Every field, in table order."""
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        """The field with this name (`id` is accepted for `uuid`), or a clear error."""
        canonical = "uuid" if name == "id" else name
        for candidate in self.fields:
            if candidate.name == canonical:
                return candidate
        raise UnknownFieldError(
            f"unknown field {name[:60]!r} for service {self.name!r}; "
            f"known fields: {', '.join(self.field_names)}"
        )

    @property
    def required(self) -> tuple[Field, ...]:
        """Fields an import file must have a column for."""
        return tuple(f for f in self.fields if f.required)

    @property
    def filterable(self) -> tuple[Field, ...]:
        """Fields whose distinct values are kept in `filter_values`."""
        return tuple(f for f in self.fields if f.filterable)


T = FieldType

COMPANY = ServiceSchema(
    name="company",
    table="companies",
    index="companies",
    fields=(
        Field("uuid", T.UUID, required=True),
        Field("name", T.TEXT, required=True),
        Field("website", T.TEXT),
        Field("industries", T.TEXT_ARRAY, filterable=True),
        Field("employees_count", T.INTEGER),
        Field("annual_revenue", T.BIGINT),
        Field("founded_year", T.INTEGER),
        Field("country", T.TEXT, filterable=True),
        Field("state", T.TEXT, filterable=True),
        Field("city", T.TEXT, filterable=True),
        Field("phone", T.TEXT),
        Field("linkedin_url", T.TEXT),
    ),
)

CONTACT = ServiceSchema(
    name="contact",
    table="contacts",
    index="contacts",
    fields=(
        Field("uuid", T.UUID, required=True),
        Field("first_name", T.TEXT),
        Field("last_name", T.TEXT),
        Field("email", T.TEXT),
        Field("title", T.TEXT, filterable=True),
        Field("seniority", T.TEXT, filterable=True),
        Field("department", T.TEXT, filterable=True),
        Field("company_id", T.UUID),
        Field("phone", T.TEXT),
        Field("country", T.TEXT, filterable=True),
        Field("state", T.TEXT, filterable=True),
        Field("city", T.TEXT, filterable=True),
        Field("linkedin_url", T.TEXT),
        Field("email_verified_at", T.TIMESTAMP),
    ),
)

SERVICES = {service.name: service for service in (CONTACT, COMPANY)}


def service_named(name: str) -> ServiceSchema:
    """The service with this name, or ERR_UNKNOWN_SERVICE."""
    try:
        return SERVICES[name]
    except KeyError:
        raise UnknownServiceError(
            f"unknown service {name[:40]!r}; use 'contact' or 'company'"
        ) from None
