"""A v4 invoices document of any size, generated while it is sent: the client's flat-memory
test streams a million lines from ``serve_big_document`` without writing them anywhere.

Shape: ``invoices`` invoices × ``customers`` customers × ``subscriptions`` subscriptions ×
``lines`` price lines, every field present in the documented order (XML) or with keys sorted
ignoring case (JSON), totals computed while the lines go out. ``expected_total`` is the exact
sum of every line's ``ExtendedPrice``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

from . import loopback

ROW_HASH = "d48cdac00fcd7574e5208467f19a9f32cd93fa3cf6b0c528eaa711027cd27848"


@dataclass(frozen=True)
class Shape:
    invoices: int = 10
    customers: int = 10
    subscriptions: int = 10
    lines: int = 1000

    @property
    def total_lines(self) -> int:
        return self.invoices * self.customers * self.subscriptions * self.lines


def _price(n: int) -> str:
    """A money value with 2-4 decimals, negative now and then: 12.34, -0.125, 7.0001."""
    cents = (n * 7919) % 100_000
    text = f"{cents // 100}.{cents % 100:02d}"
    if n % 7 == 0:
        text += "5"
    if n % 11 == 0:
        text = "-" + text
    return text


def _money(value: Decimal) -> str:
    """As the documents write money: 2 to 4 decimals, no trailing zero past the second."""
    whole, _, fraction = f"{value:.4f}".partition(".")
    return f"{whole}.{fraction.rstrip('0').ljust(2, '0')}"


def expected_total(shape: Shape) -> Decimal:
    return sum((Decimal(_price(n)) for n in range(shape.total_lines)), Decimal(0))


HEADER_XML = ("<Header><InvoiceID>BIG-{i:07d}</InvoiceID><Description>Big services</Description>"
              "<Date>20261223</Date><ExpirationDate>20270122</ExpirationDate>"
              "<Currency>EUR</Currency><TermsOfPaymentDays>30</TermsOfPaymentDays>"
              "<Type>Invoice</Type><TypeIdentifier>1</TypeIdentifier>"
              "<LanguageCode>en</LanguageCode><Language>English</Language></Header>"
              "<Sender><AccountID>1</AccountID><CompanyName>Cloud Distribution BV</CompanyName>"
              "<Address /><PostalCode /><City /><CountryCode>NL</CountryCode><Country />"
              "<Telephone /><Fax /><ChamberOfCommerce /><BankAccount /><IBAN /><BIC />"
              "<VATNumber /><Website /><Logo /></Sender>"
              "<Receiver><AccountID>2</AccountID><CustomerNumber>2</CustomerNumber>"
              "<CompanyName>Acme</CompanyName><VATNumber /><ContactFirstName />"
              "<ContactMiddleName /><ContactLastName /><Address /><Zip /><City />"
              "<CountryCode>NL</CountryCode><Country /><Telephone /><Fax /><Email />"
              "<Type>Reseller</Type></Receiver>")
LINE_XML = ("<PriceLine><LineId>{n}</LineId><UID>6f0fe13a-0f22-493c-a726-{n:012d}</UID>"
            "<Description>Licence - Plan (Cycle Fee)</Description><SKU>SKU-1</SKU>"
            "<Quantity>1</Quantity><QuantityType>licence</QuantityType>"
            "<UnitPrice>{p}</UnitPrice><Discount>0.00</Discount>"
            "<ExtendedPrice>{p}</ExtendedPrice><VAT>0.00</VAT><TaxZoneID>1</TaxZoneID>"
            "<TaxPercentage>0</TaxPercentage><StartDate>20261101</StartDate>"
            "<EndDate>20261130</EndDate><Duration>1</Duration><DurationType>Month</DurationType>"
            "<ConsumerCompanyName>C {c}</ConsumerCompanyName>"
            "<ConsumerCompanyNumber>C-{c}</ConsumerCompanyNumber><RatePeriodID /><SubPONumber />"
            "<ChargeType>Cycle Fee</ChargeType><BillingFrequency>Monthly</BillingFrequency>"
            f"<InvoiceRowHash>{ROW_HASH}</InvoiceRowHash></PriceLine>")
LINE_JSON = ('{{"BillingFrequency":"Monthly","ChargeType":"Cycle Fee",'
             '"ConsumerCompanyName":"C {c}","ConsumerCompanyNumber":"C-{c}",'
             '"Description":"Licence - Plan (Cycle Fee)","Discount":0.00,"Duration":1,'
             '"DurationType":"Month","EndDate":"20261130","ExtendedPrice":{p},'
             f'"InvoiceRowHash":"{ROW_HASH}","LineId":{{n}},"Quantity":1,'
             '"QuantityType":"licence","RatePeriodID":null,"SKU":"SKU-1",'
             '"StartDate":"20261101","SubPONumber":"","TaxPercentage":0,"TaxZoneID":1,'
             '"UID":"6f0fe13a-0f22-493c-a726-{n:012d}","UnitPrice":{p},"VAT":0.00}}')
HEAD_JSON = ('"Header":{{"Currency":"EUR","Date":"20261223","Description":"Big services",'
             '"ExpirationDate":"20270122","InvoiceID":"BIG-{i:07d}","Language":"English",'
             '"LanguageCode":"en","TermsOfPaymentDays":30,"Type":"Invoice","TypeIdentifier":1}},'
             '"Receiver":{{"AccountID":2,"Address":"","City":"","CompanyName":"Acme",'
             '"ContactFirstName":"","ContactLastName":"","ContactMiddleName":"","Country":"",'
             '"CountryCode":"NL","CustomerNumber":"2","Email":"","Fax":"","Telephone":"",'
             '"Type":"Reseller","VATNumber":"","Zip":""}},'
             '"Sender":{{"AccountID":1,"Address":"","BankAccount":"","BIC":"","City":"",'
             '"ChamberOfCommerce":"","CompanyName":"Cloud Distribution BV","Country":"",'
             '"CountryCode":"NL","Fax":"","IBAN":"","Logo":"","PostalCode":"","Telephone":"",'
             '"VATNumber":"","Website":""}}')


def _subscription_xml(s: int) -> str:
    return (f"<Subscription><SubscriptionID>{s}</SubscriptionID><SubscriptionName>S</Subscriptio"
            "nName><BillingModel>1</BillingModel><PlanID>1</PlanID><PlanName>P</PlanName>"
            "<PlanCategoryName>C</PlanCategoryName><StartDate>20260101</StartDate>"
            "<SubscriptionPONumber /><SubscriptionDetails /><PriceLines>")


def generate(shape: Shape, fmt: str) -> Iterator[bytes]:
    """The document, a subscription's lines at a time."""
    json_ = fmt == "json"
    yield (b'{"Invoices":[' if json_ else
           b'<?xml version="1.0" encoding="utf-8"?>\n<InvoiceResponse xmlns:xsd="http://www.w3'
           b'.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">')
    n = 0
    for i in range(shape.invoices):
        total = Decimal(0)
        yield b"," if json_ and i else b""
        yield (b'{"Customers":[' if json_ else
               f"<Invoice>{HEADER_XML.format(i=i)}<Customers>".encode())
        for c in range(shape.customers):
            yield ((b"," if c else b"") + f'{{"AccountID":{c},"CompanyName":"C {c}",'
                   f'"CostCenter":"","CustomerNumber":"C-{c}","Subscriptions":['.encode()
                   if json_ else
                   f"<Customer><AccountID>{c}</AccountID><CustomerNumber>C-{c}</CustomerNumber>"
                   f"<CompanyName>C {c}</CompanyName><CostCenter /><Subscriptions>".encode())
            for s in range(shape.subscriptions):
                prices = [_price(n + k) for k in range(shape.lines)]
                total += sum(map(Decimal, prices), Decimal(0))
                if json_:
                    body = ",".join(LINE_JSON.format(n=n + k, p=p, c=c)
                                    for k, p in enumerate(prices))
                    yield ((b"," if s else b"") + b'{"BillingModel":1,"PlanCategoryName":"C",'
                           b'"PlanID":1,"PlanName":"P","PriceLines":[' + body.encode() +
                           f'],"StartDate":"20260101","SubscriptionDetails":[],'
                           f'"SubscriptionID":{s},"SubscriptionName":"S",'
                           f'"SubscriptionPONumber":""}}'.encode())
                else:
                    body = "".join(LINE_XML.format(n=n + k, p=p, c=c)
                                   for k, p in enumerate(prices))
                    yield (_subscription_xml(s) + body + "</PriceLines></Subscription>").encode()
                n += shape.lines
            yield b"]}" if json_ else b"</Subscriptions></Customer>"
        money = _money(total)
        totals = (f'"TotalExcludingVAT":{money},"TotalIncludingVAT":{money},"TotalVAT":0.00'
                  if json_ else f"<TotalExcludingVAT>{money}</TotalExcludingVAT><TotalVAT>0.00"
                  f"</TotalVAT><TotalIncludingVAT>{money}</TotalIncludingVAT>")
        yield (f'],{HEAD_JSON.format(i=i)},"Totals":{{{totals}}}}}'.encode() if json_ else
               f"</Customers><Totals>{totals}</Totals></Invoice>".encode())
    yield b"]}\n" if json_ else b"</InvoiceResponse>\n"


@contextmanager
def serve_big_document(shape: Shape) -> Iterator[str]:
    """A loopback HTTP/1.0 server answering ``/api/v4/invoices?format=xml|json`` with the
    generated document (the body ends when the connection closes)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fmt = parse_qs(urlparse(self.path).query).get("format", ["xml"])[0]
            self.send_response(200)
            self.send_header("Content-Type",
                             "application/json" if fmt == "json" else "application/xml")
            self.end_headers()
            for chunk in generate(shape, fmt):
                self.wfile.write(chunk)

        def log_message(self, *args: object) -> None:
            pass

    with loopback.serve(Handler) as url:
        yield url
