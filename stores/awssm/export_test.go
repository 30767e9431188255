package awssm

// SetBeforeMove sets a hook that runs in Publish between the fence's
// compare and the move of AWSCURRENT.
func SetBeforeMove(s *Store, f func()) { s.beforeMove = f }
