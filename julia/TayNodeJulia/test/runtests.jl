# TayNodeJulia's conformance suite against JAX-computed golden values (tests/data/julia_golden.toml,
# written by tests/data/make_julia_golden.py). Run from a taynode checkout:
#     julia --project=julia/TayNodeJulia -e 'using Pkg; Pkg.test()'
# TAYNODE_GOLDEN overrides the path of the golden file.

using Test
using TOML
using TayNodeJulia

const GOLDEN_PATH = get(ENV, "TAYNODE_GOLDEN",
    normpath(joinpath(@__DIR__, "..", "..", "..", "..", "..", "tests", "data", "julia_golden.toml")))
isfile(GOLDEN_PATH) || error("golden values not found at $GOLDEN_PATH: run from a taynode checkout, or set TAYNODE_GOLDEN")
const GOLDEN = TOML.parsefile(GOLDEN_PATH)

# (batch, d) nested rows, as Python writes them → d × batch, the layout TayNodeJulia takes.
columns(rows) = reduce(hcat, [Float64.(r) for r in rows])
# out × in nested rows → a Matrix.
rowmatrix(rows) = permutedims(reduce(hcat, [Float64.(r) for r in rows]))

const MODELS = Dict(m["name"] => MLP(m["activation"],
    collect(Iterators.flatten((rowmatrix(W), Float64.(b)) for (W, b) in zip(m["weights"], m["biases"])))...)
    for m in GOLDEN["mlp"])

dynamics(name) = haskey(MODELS, name) ? MODELS[name] : problem(name)

@testset "TayNodeJulia" begin
    @testset "derivatives ($(c["dynamics"]), K = $(c["order"]))" for c in GOLDEN["derivatives"]
        Z = columns(c["z"])
        out = taylor_derivatives(dynamics(c["dynamics"]), Z, Float64(c["t"]), c["order"])
        expected = c["expected"]  # (K, batch, d)
        @test size(out) == (size(Z, 1), size(Z, 2), c["order"])
        @test all(isfinite, out)
        for k in 1:c["order"], b in 1:size(Z, 2), j in 1:size(Z, 1)
            @test isapprox(out[j, b, k], expected[k][b][j]; rtol=1e-10, atol=1e-12)
        end
    end

    @testset "order 0 is rejected, as in JAX" begin
        @test_throws ArgumentError taylor_derivatives(problem("quadratic"), ones(1, 1), 0.0, 0)
        @test_throws ArgumentError rk_integral(problem("quadratic"), ones(1, 1), 0.0, 1.0, 0)
    end

    @testset "solve ($(c["dynamics"]), $alg)" for c in GOLDEN["solve"], alg in c["algorithms"]
        Z0 = columns(c["z0"])
        ts = Float64.(c["ts"])
        Y, nf, naccept, nreject = solve_ode(dynamics(c["dynamics"]), Z0, ts, alg; reltol=c["tol"], abstol=c["tol"])
        @test size(Y) == (size(Z0)..., length(ts))
        for (i, yi) in enumerate(c["expected"]), b in 1:size(Z0, 2), j in 1:size(Z0, 1)
            @test isapprox(Y[j, b, i], yi[b][j]; atol=c["accept"], rtol=c["accept"])
        end
        @test nf > 0 && naccept > 0 && nreject >= 0
    end

    # nf counts every evaluation; naccept + nreject counts every attempted step: for an FSAL
    # pair with s new stages per attempted step, nf − s·(naccept + nreject) is the fixed number of
    # start-up evaluations, the same at any tolerance.
    @testset "stats ($alg)" for (alg, s) in (("dopri5", 6), ("tsit5", 6), ("bosh3", 3))
        f = problem("van_der_pol")
        offsets = Int[]
        for tol in (1e-5, 1e-9)
            calls = Ref(0)
            counted = (z, t) -> (calls[] += 1; f(z, t))
            _, nf, naccept, nreject = solve_ode(counted, [2.0 0.5; 0.0 0.5], [0.0, 3.0], alg; reltol=tol, abstol=tol)
            @test calls[] == 2nf  # f is called once per example, two examples per evaluation
            push!(offsets, nf - s * (naccept + nreject))
        end
        @test offsets[1] == offsets[2]
        @test 0 <= offsets[1] <= 4
    end

    @testset "R_K ($(c["dynamics"]), K = $(c["order"]), [$(c["t0"]), $(c["t1"])])" for c in GOLDEN["rk"]
        r = rk_integral(dynamics(c["dynamics"]), columns(c["z0"]), Float64(c["t0"]), Float64(c["t1"]), c["order"];
                        reltol=c["tol"], abstol=c["tol"])
        @test length(r) == length(c["expected"])
        @test all(r .>= 0)
        for (ri, ei) in zip(r, c["expected"])
            @test isapprox(ri, ei; rtol=c["rtol"])
        end
    end

    @testset "failed solves throw SolveFailed ($(c["dynamics"]), $alg)" for c in GOLDEN["failing"],
            alg in ("dopri5", "tsit5", "Vern9")
        f = dynamics(c["dynamics"])
        Z0 = columns(c["z0"])
        @test_throws SolveFailed solve_ode(f, Z0, [c["t0"], c["t1"]], alg)
        @test_throws SolveFailed rk_integral(f, Z0, c["t0"], c["t1"], c["order"]; alg=alg)
        err = try
            solve_ode(f, Z0, [c["t0"], c["t1"]], alg)
        catch e
            e
        end
        @test startswith(sprint(showerror, err), "SolveFailed")
    end

    @testset "unknown names are ArgumentErrors" begin
        @test_throws ArgumentError problem("nope")
        @test_throws ArgumentError MLP("nope", ones(1, 2), ones(1))
        @test_throws ArgumentError solve_ode(problem("quadratic"), ones(1, 1), [0.0, 0.1], "nope")
    end
end
