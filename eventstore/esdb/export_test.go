package esdb

// Clients reports how many clients the store has built: 1, plus one per
// rebuild after the client closed itself.
func Clients(s *Store) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clients
}
