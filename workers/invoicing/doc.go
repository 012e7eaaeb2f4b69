// Package invoicing bills corporate accounts for a period of whole days:
// it owns invoice runs (one per period, started by the scheduler or the
// API), their discovery of the accounts to bill, the invoice:run and
// invoice:account task handlers, batch billing (up to BatchSize pending
// accounts per transaction, whose invoices and lines one statement,
// store.BillAccounts, computes and writes in PostgreSQL),
// the tax table, gapless numbering through the store, retries of failed
// accounts and the "invoicing" consumer group that hands runs started
// without Redis (by the API) to the workers.
//
// The task and event type names (workers.TypeInvoiceRun,
// workers.EventInvoiceCreated, ...) stay in workers, whose notifications
// group mails each invoice on invoice.created; so does the PDF rendering
// and money formatting that mail uses (workers.RenderInvoicePDF,
// workers.FormatMoney).
//
// It imports workers (task metadata, queues, consumer groups, the task
// logger), stream and sql/store; api, scheduler and cmd import it, never
// the reverse, and workers never imports it.
package invoicing
