package files

// SetTestHooks sets hooks that tests use to stop a Publish between its
// compare and its write (afterCompare) and to learn that a lock is held
// elsewhere (lockBusy).
func SetTestHooks(s *Store, afterCompare, lockBusy func()) {
	s.afterCompare, s.lockBusy = afterCompare, lockBusy
}
