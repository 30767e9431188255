package awssm_test

import (
	"testing"

	"github.com/rotator/rotator/rotation"
	"github.com/rotator/rotator/stores/storetest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Harness{
		New: func(t *testing.T) (rotation.Store, string) {
			e := testEnv(t)
			return e.store(t, nil), e.name(t)
		},
		Stages: true,
	})
}

func TestConformanceShared(t *testing.T) {
	t.Parallel()
	storetest.Run(t, storetest.Shared(func(t *testing.T) (rotation.DocStore, string) {
		e := testEnv(t)
		return e.store(t, nil), e.name(t)
	}))
}
