package api

// routes registers every route. Keep this the one place routes are listed:
// the OpenAPI coverage test walks the engine's routes.
func (s *Server) routes() {
	r := s.engine
	r.GET("/healthz", s.healthz)
	r.GET("/readyz", s.readyz)
}
