package workers

import (
	"time"

	"github.com/hibiken/asynq"

	"github.com/bazaarhq/bazaar/sql/store"
)

// routes registers every task type's handler.
func (w *Workers) routes(mux *asynq.ServeMux) {
	mux.HandleFunc(TypeEmailWelcome, w.emailWelcome)
	mux.Handle(TypeEmailOrderConfirmed, w.orderMail("order_confirmed", confirmationMail))
	mux.Handle(TypeEmailOrderCancelled, w.orderMail("order_cancelled", cancellationMail))
	mux.Handle(TypeEmailOrderShipped, w.orderMail("order_shipped", shipmentMail))
	mux.Handle(TypeEmailOrderReminder, w.orderMail("order_reminder", func(o store.Order, u store.User, p OrderPayload) (Mail, bool) {
		return reminderMail(time.Now())(o, u, p)
	}))
	mux.HandleFunc(TypeEmailReturnResolved, w.emailReturnResolved)
	mux.HandleFunc(TypeEmailInvoice, w.emailInvoice)
	mux.HandleFunc(TypeEmailWebhookDisabled, w.emailWebhookDisabled)
	mux.HandleFunc(TypePointsOpen, w.openPointsAccount)
	mux.HandleFunc(TypePointsGrant, w.grantPoints)
	mux.HandleFunc(TypePointsRevoke, w.revokePoints)
	mux.HandleFunc(TypeSegmentsEvaluate, w.evaluateSegments)
	mux.HandleFunc(TypeInventoryReserve, w.reserveStock)
	mux.HandleFunc(TypeInventoryRelease, w.releaseStock)
	mux.HandleFunc(TypeInventoryRestock, w.restockReturn)
	mux.HandleFunc(TypePaymentCharge, w.chargeOrder)
	mux.HandleFunc(TypePaymentRefund, w.refundOrder)
	mux.HandleFunc(TypePaymentRefundReturn, w.refundReturn)
	mux.HandleFunc(TypeOrderConfirm, w.confirmOrder)
	mux.HandleFunc(TypeOrderCancel, w.cancelOrder)
	mux.HandleFunc(TypeOrderFollowUp, w.followUp)
}
