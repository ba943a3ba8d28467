package gateway

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"medgate/engine"
	"medgate/engine/abi"
	"medgate/gateway/internal/testenv"
)

// TestReferencePoliciesFitTheStepBudget: the largest bill a hospital may
// send (MaxItems lines) settles under every reference policy on a third of
// the default step budget. The budget is counted statically (engine/meter)
// and the Go toolchain's code is charged far more than it runs, so this is
// what says the default leaves real bills room.
func TestReferencePoliciesFitTheStepBudget(t *testing.T) {
	ctx := context.Background()
	def, err := engine.New(ctx, engine.Config{Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	budget := def.Config().CallFuel
	def.Close(ctx)
	e, err := engine.New(ctx, engine.Config{CallFuel: budget / 3, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(ctx)
	dir := testenv.ModuleDir(t)
	for _, p := range testenv.Reference {
		wasm, err := os.ReadFile(filepath.Join(dir, p.Region, p.Version+".wasm"))
		if err != nil {
			t.Fatal(err)
		}
		m, err := e.Load(ctx, p.Region, p.Version, wasm)
		if err != nil {
			t.Fatal(err)
		}
		in := &abi.Input{
			Date: 20250609, UseAccount: true,
			Person:   abi.Person{Scheme: abi.SchemeResident, Employment: abi.EmploymentActive, Registration: abi.RegistrationTemporary, Groups: []string{"subsistence"}},
			Visit:    abi.Visit{Type: abi.VisitInpatient, AdmittedOn: 20250601, DischargedOn: 20250609, VisitDate: 20250609},
			Hospital: abi.Hospital{Level: 3, AssistanceDesignated: true, TreatingRegion: "110105", InsuredRegion: p.Region},
			Counters: []abi.Counter{{Name: "serious.base", Value: 1_000_000}},
		}
		for i := 0; i < MaxItems; i++ {
			l := abi.Line{Code: fmt.Sprintf("XD%04d", i), Class: abi.ClassB, Listed: true, Amount: int64(1000 + i*137), PreSelfPay: 100, Eligible: int64(900 + i*137)}
			in.Lines = append(in.Lines, l)
			in.Sums.Total += l.Amount
			in.Sums.PreSelfPay += l.PreSelfPay
			in.Sums.Eligible += l.Eligible
		}
		var out abi.Output
		if err := m.Call(ctx, in, in.AppendBinary(nil), &out); err != nil {
			t.Errorf("%s/%s, %d lines, on a third of the budget (%d): %v", p.Region, p.Version, MaxItems, budget/3, err)
		}
		m.Close(ctx)
	}
}
