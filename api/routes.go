package api

// routes registers every route. Keep this the one place routes are listed:
// the OpenAPI coverage test walks the engine's routes, and the auth matrix
// test expects every /v1 route in its table.
//
// Routes under /v1 sit behind s.authenticate (a Principal in the context)
// and s.idempotency (Idempotency-Key on POST); s.requireRole picks the
// roles, and handlers answer 404 for another seller's data. Operator roles
// follow requireRole's ranks: a viewer reads every route open to admin, a
// route open to operator is open to admin too, so mutating admin routes
// say operator when operators may use them.
func (s *Server) routes() {
	r := s.engine
	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
	r.GET("/openapi.yaml", s.openAPI)
	r.GET("/asyncapi.yaml", s.asyncAPI)
	r.GET("/docs", s.docsReference) // API reference pages (docs.go)
	r.GET("/docs/events", s.docsEvents)
	r.GET(redocPath, s.docsRedoc)
	s.mountMonitor(r) // asynqmon at /monitor, operators (monitor.go)
	s.mountDevMail(r) // development mail sink at /dev/mail (devmail.go)

	// The console, its login and logout included, is mounted by
	// mountConsole (console_mount.go) after these routes.

	const (
		admin      = RoleAdmin
		storefront = RoleStorefront
		seller     = RoleSeller
		printer    = RolePrinter
		operator   = RoleOperator
	)
	v1 := r.Group("/v1", s.authenticate, s.idempotency)

	// Stripe's webhooks (payments.go): outside the group, as Stripe signs
	// each delivery instead of sending a key.
	r.POST("/v1/webhooks/stripe", s.stripeWebhook)

	// Live events (sse.go): outside the group, as /v1/events is open
	// without a key and EventSource sends tokens as ?access_token=.
	r.GET("/v1/events", s.sseCORS, s.sseAuth(true), s.events)
	r.OPTIONS("/v1/events", s.sseCORS, s.ssePreflight)
	r.GET("/v1/sellers/:id/events", s.sseCORS, s.sseAuth(false), s.requireRole(admin, seller, printer), s.sellerEvents)
	r.OPTIONS("/v1/sellers/:id/events", s.sseCORS, s.ssePreflight)

	v1.POST("/sellers", s.requireRole(admin), s.createSeller)
	v1.GET("/sellers", s.requireRole(admin, storefront), s.listSellers)
	v1.GET("/sellers/:id", s.requireRole(admin, storefront, seller, printer), s.getSeller)
	v1.PATCH("/sellers/:id", s.requireRole(admin), s.updateSeller)
	v1.POST("/sellers/:id/keys", s.requireRole(admin, seller), s.createSellerKey)
	v1.GET("/sellers/:id/keys", s.requireRole(admin, seller), s.listSellerKeys)
	v1.DELETE("/sellers/:id/keys/:key_id", s.requireRole(admin, seller), s.revokeSellerKey)
	v1.POST("/sellers/:id/printer-tokens", s.requireRole(admin, seller), s.createPrinterToken)
	v1.GET("/sellers/:id/products", s.requireRole(admin, storefront, seller, printer), s.listProducts)
	v1.GET("/sellers/:id/unprinted-orders", s.requireRole(admin, seller, printer), s.listUnprintedOrders)
	v1.POST("/printers/:id/acks", s.requireRole(printer), s.ackOrder)
	v1.POST("/sellers/:id/webhooks", s.requireRole(admin, seller), s.createWebhook)
	v1.GET("/sellers/:id/webhooks", s.requireRole(admin, seller), s.listWebhooks)
	v1.GET("/sellers/:id/webhooks/:wid", s.requireRole(admin, seller), s.getWebhook)
	v1.PATCH("/sellers/:id/webhooks/:wid", s.requireRole(admin, seller), s.updateWebhook)
	v1.DELETE("/sellers/:id/webhooks/:wid", s.requireRole(admin, seller), s.deleteWebhook)
	v1.POST("/sellers/:id/webhooks/:wid/rotate-secret", s.requireRole(admin, seller), s.rotateWebhookSecret)
	v1.GET("/sellers/:id/webhooks/:wid/deliveries", s.requireRole(admin, seller), s.listWebhookDeliveries)
	v1.POST("/sellers/:id/webhooks/:wid/deliveries/:did/redeliver", s.requireRole(admin, seller), s.redeliverWebhook)
	v1.POST("/sellers/:id/webhooks/:wid/redeliver", s.requireRole(admin, seller), s.redeliverWebhooksSince)
	v1.POST("/storefront-keys", s.requireRole(admin), s.createStorefrontKey)
	v1.GET("/storefront-keys", s.requireRole(admin), s.listStorefrontKeys)
	v1.DELETE("/storefront-keys/:key_id", s.requireRole(admin), s.revokeStorefrontKey)

	v1.POST("/users", s.requireRole(admin, storefront), s.registerUser)
	v1.GET("/users/:id", s.requireRole(admin, storefront), s.getUser)
	v1.PATCH("/users/:id", s.requireRole(admin, storefront), s.updateUser)
	v1.POST("/users/:id/sessions", s.requireRole(admin, storefront), s.createSession)

	v1.POST("/products", s.requireRole(admin, seller), s.createProduct)
	v1.GET("/products/:id", s.requireRole(admin, storefront, seller, printer), s.getProduct)
	v1.PATCH("/products/:id", s.requireRole(admin, seller), s.updateProduct)
	v1.PUT("/products/:id/stock", s.requireRole(admin, seller), s.setStock)
	v1.POST("/products/:id/stock-adjustments", s.requireRole(admin, seller), s.adjustStock)

	v1.POST("/orders", s.requireRole(admin, storefront), s.createOrder)
	v1.GET("/orders", s.requireRole(admin, storefront, seller, printer), s.listOrders)
	v1.GET("/orders/:id", s.requireRole(admin, storefront, seller, printer), s.getOrder)
	v1.POST("/orders/:id/cancellation", s.requireRole(admin, storefront, seller), s.cancelOrder)
	v1.POST("/orders/:id/shipment", s.requireRole(admin, seller), s.shipOrder)
	v1.POST("/orders/:id/delivery", s.requireRole(admin, seller), s.deliverOrder)
	v1.POST("/orders/:id/returns", s.requireRole(admin, storefront), s.openReturn)

	v1.GET("/returns", s.requireRole(admin, storefront, seller, printer), s.listReturns)
	v1.GET("/returns/:id", s.requireRole(admin, storefront, seller, printer), s.getReturn)
	v1.POST("/returns/:id/resolution", s.requireRole(admin, seller), s.resolveReturn)

	v1.GET("/admin/streams", s.requireRole(admin), s.adminStreams)
	v1.POST("/admin/announcements", s.requireRole(operator), s.createAnnouncement)
	v1.GET("/admin/dlq/:group", s.requireRole(admin), s.adminListDLQ)
	v1.POST("/admin/dlq/:group/redrive", s.requireRole(operator), s.adminRedriveDLQ)
	v1.POST("/admin/dlq/:group/purge", s.requireRole(admin), s.adminPurgeDLQ)

	// Seller operations (sellerops.go): pause, resume, replay.
	v1.POST("/admin/sellers/:id/pause", s.requireRole(operator), s.pauseSeller)
	v1.POST("/admin/sellers/:id/resume", s.requireRole(operator), s.resumeSeller)
	v1.POST("/admin/sellers/:id/replay", s.requireRole(operator), s.replaySeller)

	v1.GET("/admin/schedules", s.requireRole(admin), s.listSchedules)
	v1.POST("/admin/invoicing/runs", s.requireRole(operator), s.startInvoiceRun)
	v1.GET("/admin/invoicing/runs", s.requireRole(admin), s.listInvoiceRuns)
	v1.GET("/admin/invoicing/runs/:id", s.requireRole(admin), s.getInvoiceRun)
	v1.POST("/admin/invoicing/runs/:id/retry-failed", s.requireRole(operator), s.retryFailedAccounts)
	v1.GET("/invoices", s.requireRole(admin), s.listInvoices)
	v1.GET("/invoices/:id", s.requireRole(admin), s.getInvoice)
	v1.GET("/invoices/:id/pdf", s.requireRole(admin), s.getInvoicePDF)

	// Polling receipt printers (api/printers): outside the group, as they
	// authenticate with HTTP Basic and speak their vendors' protocols.
	r.POST("/v1/printers/cloudprnt", s.printers.CloudPRNTPoll)
	r.GET("/v1/printers/cloudprnt", s.printers.CloudPRNTJob)
	r.DELETE("/v1/printers/cloudprnt", s.printers.CloudPRNTConfirm)
	r.POST("/v1/printers/epson", s.printers.EpsonSDP)
	v1.GET("/sellers/:id/printers", s.requireRole(admin, seller), s.listPrinters)
	v1.GET("/sellers/:id/print-jobs", s.requireRole(admin, seller), s.listUnconfirmedPrintJobs)
	v1.POST("/sellers/:id/print-jobs/:order_id/resend", s.requireRole(admin, seller), s.resendPrintJob)

	// Named operators and the audit log (operators.go, audit.go).
	v1.POST("/admin/operators", s.requireRole(admin), s.createOperator)
	v1.GET("/admin/operators", s.requireRole(admin), s.listOperators)
	v1.GET("/admin/operators/:id", s.requireRole(admin), s.getOperator)
	v1.PATCH("/admin/operators/:id", s.requireRole(admin), s.updateOperator)
	v1.DELETE("/admin/operators/:id", s.requireRole(admin), s.revokeOperator)
	v1.GET("/admin/audit", s.requireRole(admin), s.listAudit)
}
