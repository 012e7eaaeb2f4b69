package api

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"
	"github.com/oapi-codegen/runtime/types"
	"github.com/stretchr/testify/require"

	"github.com/bazaarhq/bazaar/api/client"
)

// apiClient is a client of the real server at url that sends token.
func apiClient(t *testing.T, url, token string) *client.ClientWithResponses {
	t.Helper()
	c, err := client.NewClientWithResponses(url, client.WithRequestEditorFn(func(_ context.Context, req *http.Request) error {
		req.Header.Set("Authorization", "Bearer "+token)
		return nil
	}))
	require.NoError(t, err)
	return c
}

// TestClientPlacesOrder drives a real server over HTTP through the client
// generated from openapi.yaml: a seller lists a product, a storefront
// registers a buyer and places an order (replayed by its Idempotency-Key),
// and the seller reads it back; a refused order decodes as a problem. A
// route, field or status the document gets wrong fails here.
func TestClientPlacesOrder(t *testing.T) {
	t.Parallel()
	b := setup(t)
	hs := httptest.NewServer(b.srv.Handler())
	t.Cleanup(hs.Close)
	ctx := context.Background()
	seller, front := apiClient(t, hs.URL, b.keyA), apiClient(t, hs.URL, b.front)

	stock, currency := 5, "EUR"
	prod, err := seller.CreateProductWithResponse(ctx, nil, client.ProductCreate{
		Sku: "mug-" + uuid.NewString()[:8], Name: new("Mug"), PriceMinor: 1250, Currency: &currency, Stock: &stock,
	})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, prod.StatusCode(), "body: %s", prod.Body)
	require.NotNil(t, prod.JSON201)

	user, err := front.RegisterUserWithResponse(ctx, nil, client.UserCreate{Email: types.Email("buyer-" + uuid.NewString()[:8] + "@example.com"), Name: new("Buyer")})
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, user.StatusCode(), "body: %s", user.Body)

	body := client.OrderCreate{UserId: user.JSON201.Id, PaymentMethod: "pm_card_visa"}
	body.Items = append(body.Items, struct {
		ProductId uuid.UUID `json:"product_id"`
		Quantity  int       `json:"quantity"`
	}{ProductId: prod.JSON201.Id, Quantity: 2})
	key := "order-" + uuid.NewString()
	placed, err := front.CreateOrderWithResponse(ctx, &client.CreateOrderParams{IdempotencyKey: &key}, body)
	require.NoError(t, err)
	require.Equal(t, http.StatusCreated, placed.StatusCode(), "body: %s", placed.Body)
	o := placed.JSON201
	require.NotNil(t, o)
	require.Equal(t, b.sellerA, o.SellerId)
	require.Equal(t, client.OrderStatusPending, o.Status)
	require.EqualValues(t, 2500, o.TotalMinor)
	require.Len(t, o.Items, 1)
	require.Equal(t, prod.JSON201.Id, o.Items[0].ProductId)

	replayed, err := front.CreateOrderWithResponse(ctx, &client.CreateOrderParams{IdempotencyKey: &key}, body)
	require.NoError(t, err)
	require.Equal(t, "true", replayed.HTTPResponse.Header.Get("Idempotency-Replayed"))
	require.Equal(t, o.Id, replayed.JSON201.Id)

	got, err := seller.GetOrderWithResponse(ctx, o.Id)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, got.StatusCode(), "body: %s", got.Body)
	require.Equal(t, o.Id, got.JSON200.Id)
	require.Equal(t, o.TotalMinor, got.JSON200.TotalMinor)

	body.Items[0].Quantity = 0
	refused, err := front.CreateOrderWithResponse(ctx, nil, body)
	require.NoError(t, err)
	require.Equal(t, http.StatusUnprocessableEntity, refused.StatusCode(), "body: %s", refused.Body)
	require.NotNil(t, refused.ApplicationproblemJSON422, "body: %s", refused.Body)
	require.Equal(t, client.ProblemType(ProblemBase+"validation"), refused.ApplicationproblemJSON422.Type)
}
