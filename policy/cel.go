package policy

import (
	"fmt"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/cost"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"
)

// CEL limits. A `when` expression is type-checked at load; its worst-case
// cost, estimated with every string at most MaxCELInputBytes and every list
// or map at most MaxCELItems long, must stay within CELCostLimit, and the
// same limit stops an evaluation that goes past it at run time (which then
// counts as an evaluation error).
const (
	CELCostLimit     = 100_000
	MaxCELBytes      = 4096
	MaxCELInputBytes = 16 << 10
	MaxCELItems      = 1024
)

// CELVariables documents the variables a `when` expression can use, in
// the order of the README table: name, CEL type, meaning.
func CELVariables() [][3]string {
	return [][3]string{
		{"request.method", "string", "the request method"},
		{"request.path", "string", "the canonical path"},
		{"request.host", "string", "the canonical host, \"\" when unreadable"},
		{"request.client_ip", "string", "the client address behind trusted_proxies, \"\" when unknown"},
		{"principal.authenticated", "bool", "whether the caller presented a valid credential"},
		{"principal.subject", "string", "the token subject or key name"},
		{"principal.roles", "list(string)", "the caller's roles"},
		{"principal.issuer", "string", "the token issuer"},
		{"principal.auth_method", "string", "jwt, apikey, external or session; \"\" when anonymous"},
		{"principal.key_name", "string", "the API key name"},
		{"principal.scopes", "list(string)", "the token's scopes"},
		{"principal.email", "string", "the verified email address"},
		{"claims", "map(string, dyn)", "the token's claims; {} without a token"},
	}
}

// newCELEnv returns the environment `when` expressions are checked in.
func newCELEnv() (*cel.Env, error) {
	var opts []cel.EnvOption
	for _, v := range CELVariables() {
		var t *cel.Type
		switch v[1] {
		case "string":
			t = cel.StringType
		case "bool":
			t = cel.BoolType
		case "list(string)":
			t = cel.ListType(cel.StringType)
		default:
			t = cel.MapType(cel.StringType, cel.DynType)
		}
		opts = append(opts, cel.Variable(v[0], t))
	}
	return cel.NewEnv(opts...)
}

// celExpr is a compiled `when` expression. It is immutable and safe for
// concurrent use.
type celExpr struct {
	src string
	prg cel.Program
}

// compileCEL type-checks src in env and builds its program; it returns why
// src is refused, or "".
func compileCEL(env *cel.Env, src string) (*celExpr, string) {
	if strings.TrimSpace(src) == "" {
		return nil, "when: empty expression"
	}
	if len(src) > MaxCELBytes {
		return nil, fmt.Sprintf("when: expression longer than %d bytes", MaxCELBytes)
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, "when: " + oneLine(iss.Err().Error())
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Sprintf("when: expression must be a bool, not %s", ast.OutputType())
	}
	est, err := env.EstimateCost(ast, sizeBound{})
	if err != nil {
		return nil, "when: cost: " + oneLine(err.Error())
	}
	if est.Max > CELCostLimit {
		return nil, fmt.Sprintf("when: worst-case cost %d is above the limit %d; simplify the expression", est.Max, CELCostLimit)
	}
	prg, err := env.Program(ast, cel.CostLimit(CELCostLimit), cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, "when: " + oneLine(err.Error())
	}
	return &celExpr{src: src, prg: prg}, ""
}

// holds evaluates e on r. An evaluation error (a missing claim, a type
// mismatch, the cost limit) yields onError: false in an allow rule, true in
// a deny rule, so an error never opens access.
func (e *celExpr) holds(r Request, onError bool) bool {
	// r is a copy: the activation escapes into the CEL program, and only
	// rules with a `when` should pay for that allocation.
	out, _, err := e.prg.Eval(&celActivation{r: r})
	if err != nil {
		return onError
	}
	b, ok := out.Value().(bool)
	if !ok {
		return onError
	}
	return b
}

// celActivation resolves the CEL variables from a Request.
type celActivation struct{ r Request }

// ResolveName implements interpreter.Activation. It returns CEL values
// directly, so lists and maps are wrapped, not converted by reflection.
func (a *celActivation) ResolveName(name string) (any, bool) {
	r := &a.r
	switch name {
	case "request.method":
		return types.String(r.Method), true
	case "request.path":
		return types.String(r.Path), true
	case "request.host":
		return types.String(r.Host), true
	case "request.client_ip":
		if !r.ClientAddr.IsValid() {
			return types.String(""), true
		}
		return types.String(r.ClientAddr.Unmap().String()), true
	case "principal.authenticated":
		return types.Bool(r.Authenticated), true
	case "principal.subject":
		return types.String(r.Subject), true
	case "principal.roles":
		return types.NewStringList(types.DefaultTypeAdapter, r.Roles), true
	case "principal.issuer":
		return types.String(r.Issuer), true
	case "principal.auth_method":
		return types.String(r.AuthMethod), true
	case "principal.key_name":
		return types.String(r.KeyName), true
	case "principal.scopes":
		return types.NewStringList(types.DefaultTypeAdapter, r.Scopes), true
	case "principal.email":
		return types.String(r.Email), true
	case "claims":
		var m map[string]any
		if r.Claims != nil {
			if v, ok := r.Claims.Claim(nil); ok {
				m, _ = v.(map[string]any)
			}
		}
		return types.NewStringInterfaceMap(types.DefaultTypeAdapter, m), true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *celActivation) Parent() interpreter.Activation { return nil }

// sizeBound bounds every input for the load-time cost estimate.
type sizeBound struct{}

func (sizeBound) EstimateSize(n cost.AstNode) *cost.SizeEstimate {
	if n.Path() == nil {
		return nil
	}
	max := uint64(MaxCELItems)
	if t := n.Type(); t != nil && t.IsExactType(cel.StringType) {
		max = MaxCELInputBytes
	}
	return &cost.SizeEstimate{Min: 0, Max: max}
}

func (sizeBound) EstimateCallCost(string, string, *cost.AstNode, []cost.AstNode) *cost.CallEstimate {
	return nil
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
