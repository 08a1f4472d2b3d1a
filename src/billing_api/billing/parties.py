"""The sender and receiver snapshots stored on an invoice (v4 party fields plus what a
Peppol e-invoice needs), so that an invoice keeps the parties as they were when it was billed.
"""

from __future__ import annotations

from typing import Any

from billing_api.access.models import Company
from billing_api.billing.chunk import CustomerRow
from billing_api.billing.countries import country_name, language_name


def sender_snapshot(company: Company) -> dict[str, Any]:
    return {
        "AccountID": company.id,
        "CompanyName": company.name,
        "Address": company.address,
        "PostalCode": company.postal_code,
        "City": company.city,
        "CountryCode": company.country_code,
        "Country": country_name(company.country_code),
        "Telephone": company.telephone,
        "Fax": company.fax,
        "ChamberOfCommerce": company.chamber_of_commerce,
        "BankAccount": company.bank_account,
        "IBAN": company.iban,
        "BIC": company.bic,
        "VATNumber": company.vat_number,
        "Website": company.website,
        "Logo": company.logo,
    } | _company_peppol(company)


def _company_peppol(company: Company) -> dict[str, Any]:
    """What a Peppol e-invoice needs beyond the v4 party fields (the writers pick theirs)."""
    return {
        "EndpointID": company.endpoint_id,
        "EndpointScheme": company.endpoint_scheme,
        "RegistrationNumber": company.chamber_of_commerce,
        "RegistrationScheme": company.registration_scheme,
        "IBAN": company.iban,
        "BIC": company.bic,
    }


def company_receiver(company: Company) -> dict[str, Any]:
    return {
        "AccountID": company.id,
        "CustomerNumber": str(company.id),
        "CompanyName": company.name,
        "VATNumber": company.vat_number,
        "ContactFirstName": company.contact_first_name,
        "ContactMiddleName": company.contact_middle_name,
        "ContactLastName": company.contact_last_name,
        "Address": company.address,
        "Zip": company.postal_code,
        "City": company.city,
        "CountryCode": company.country_code,
        "Country": country_name(company.country_code),
        "Telephone": company.telephone,
        "Fax": company.fax,
        "Email": company.email,
        "Type": "Reseller",
        "LanguageName": language_name(company.language_code),
    } | _company_peppol(company)


def customer_receiver(customer: CustomerRow) -> dict[str, Any]:
    return {
        "AccountID": customer.id,
        "CustomerNumber": customer.customer_number,
        "CompanyName": customer.company_name,
        "VATNumber": customer.vat_number,
        "ContactFirstName": customer.contact_first_name,
        "ContactMiddleName": customer.contact_middle_name,
        "ContactLastName": customer.contact_last_name,
        "Address": customer.address,
        "Zip": customer.postal_code,
        "City": customer.city,
        "CountryCode": customer.country_code,
        "Country": country_name(customer.country_code),
        "Telephone": customer.telephone,
        "Fax": customer.fax,
        "Email": customer.email,
        "Type": "Customer",
        "LanguageName": language_name(customer.language_code),
        "EndpointID": customer.endpoint_id,
        "EndpointScheme": customer.endpoint_scheme,
        "RegistrationNumber": customer.registration_number,
        "RegistrationScheme": customer.registration_scheme,
        "IBAN": customer.iban,
        "BIC": customer.bic,
    }
