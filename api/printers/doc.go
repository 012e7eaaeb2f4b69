// Package printers serves the receipt printers that poll Bazaar with their
// own protocols, so a seller's printer needs no computer beside it:
//
//   - Star CloudPRNT (HTTP method) at /v1/printers/cloudprnt: POST polls
//     with the printer's status and learns whether a job is ready, GET
//     fetches the job in a media type the printer picks (text/plain or
//     image/png), DELETE (or GET with code=, for printers configured with
//     deleteMethod GET) confirms it.
//   - Epson Server Direct Print at /v1/printers/epson: a form POST with
//     ConnectionType=GetRequest is answered with the waiting receipts as
//     ePOS-Print XML; SetResponse reports the result of each; SetStatus
//     reports the printer's status.
//
// Both sit on the same acknowledgements and "unprinted orders" as the SSE
// printers (sql/store printer_acks): a confirmed job acknowledges its
// order. A job fetched and not confirmed within ConfirmWithin (60 s)
// becomes unconfirmed and is never handed out again on its own; a person
// resends it. Printers authenticate with HTTP Basic: the printer id (the
// printer token's key id) as user name, the token as password.
//
// It owns the protocol handlers and their wire formats; receipts are drawn
// by the receipt subpackage and records live in sql/store. It imports gin,
// sql/store and api/printers/receipt, never the api package: the API
// registers these handlers in api/routes.go and hands in Fail, its one
// place where errors become HTTP statuses.
package printers
