package testbackend

// GracefulStop stops the server as an orderly shutdown does: it sends
// GOAWAY so that clients open no new streams, lets the calls in flight
// finish, then closes. Restart serves again on the same address.
func (b *GRPC) GracefulStop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv == nil {
		return ErrStopped
	}
	b.srv.GracefulStop()
	b.wg.Wait()
	b.srv = nil
	return nil
}
