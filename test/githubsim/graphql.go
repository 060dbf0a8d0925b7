package githubsim

import "net/http"

func (s *Server) serveGraphQL(w http.ResponseWriter, r *http.Request, rid string) {
	setCommon(w.Header())
	writeJSON(w, http.StatusNotImplemented, errorBody(501, "GraphQL is not implemented yet", ""))
}
