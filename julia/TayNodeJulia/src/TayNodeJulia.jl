"""
    TayNodeJulia

The Julia side of taynode's `julia` backend: the same three questions the JAX backend answers,
for a portable neural ODE (`MLP`) or a named test problem, on plain arrays.

States arrive column-major as `d × batch` matrices (Python passes the transpose of its
`(batch, d)` array, which is a zero-copy view), and results leave as `d × batch × n` arrays,
which Python reads back as a zero-copy `(n, batch, d)` view.

Dynamics are callables `f(z, t)` on one example `z::AbstractVector`, generic enough to take
`Taylor1` numbers. They use products, never integer powers: TaylorSeries evaluates `x^n` on a
`Taylor1` through its real-power recurrence, which needs a non-zero leading coefficient.

A solve that OrdinaryDiffEq ends early (MaxIters, DtLessThanMin, Unstable: it returns a partial
solution with a warning, no exception) throws [`SolveFailed`](@ref) instead of returning it.
"""
module TayNodeJulia

using TaylorSeries
using OrdinaryDiffEq
using SciMLBase: successful_retcode
using PrecompileTools: @setup_workload, @compile_workload

export MLP, problem, taylor_derivatives, solve_ode, rk_integral, SolveFailed

# ---- dynamics -------------------------------------------------------------------------------

sigmoid(x) = inv(one(x) + exp(-x))
# Both branches equal log(1 + eˣ); each exponentiates a non-positive number, so neither
# overflows (log(1 + exp(x)) is Inf, and its Taylor coefficients NaN, for x ≳ 709).
softplus(x) = constant_term(x) > 0 ? x + log1p(exp(-x)) : log1p(exp(x))
relu(x) = constant_term(x) > 0 ? x : zero(x)
# jax.nn.gelu's default (tanh approximation); x*x*x rather than x^3 (see the module docstring).
gelu(x) = x * (one(x) + tanh(sqrt(2 / pi) * (x + 0.044715 * (x * x * x)))) / 2
swish(x) = x * sigmoid(x)

const ACTIVATIONS = Dict{String,Function}(
    "tanh" => tanh, "sigmoid" => sigmoid, "softplus" => softplus,
    "relu" => relu, "gelu" => gelu, "swish" => swish,
)

"""
    MLP(activation, weights, biases)

`dz/dt = MLP([z; t])`, time concatenated to every layer's input: `weights[i]` is
`out × (in + 1)` with time in the last column (taynode's portable description).
"""
struct MLP{F}
    weights::Vector{Matrix{Float64}}
    biases::Vector{Vector{Float64}}
    act::F
end

# Arrays come one per argument (W₁, b₁, W₂, b₂, …): juliacall passes each NumPy array as an
# AbstractArray without copying, which a Python list of arrays would not give us.
function MLP(activation::AbstractString, params::AbstractArray...)
    haskey(ACTIVATIONS, activation) ||
        throw(ArgumentError("unknown activation $activation; valid: $(join(sort!(collect(keys(ACTIVATIONS))), ", "))"))
    (iseven(length(params)) && !isempty(params)) ||
        throw(ArgumentError("expected weight/bias pairs, got $(length(params)) arrays"))
    weights = [Matrix{Float64}(params[i]) for i in 1:2:length(params)]
    biases = [Vector{Float64}(params[i]) for i in 2:2:length(params)]
    return MLP(weights, biases, ACTIVATIONS[activation])
end

# Written as explicit sums so that it is generic over Float64 and Taylor1 entries alike.
affine(W, b, v) = [sum(W[i, j] * v[j] for j in eachindex(v)) + b[i] for i in axes(W, 1)]

function (m::MLP)(z::AbstractVector, t)
    h = z
    n = length(m.weights)
    for (i, (W, b)) in enumerate(zip(m.weights, m.biases))
        h = affine(W, b, vcat(h, t))
        i < n && (h = m.act.(h))
    end
    return h
end

const PROBLEMS = Dict{String,Function}(
    "quadratic" => (z, t) -> z .* z,
    "lotka_volterra" => (z, t) -> [1.5 * z[1] - z[1] * z[2], -3.0 * z[2] + z[1] * z[2]],
    "van_der_pol" => (z, t) -> [z[2], (1 - z[1] * z[1]) * z[2] - z[1]],
    "time_linear" => (z, t) -> t .* z,
)

problem(name::AbstractString) = haskey(PROBLEMS, name) ? PROBLEMS[name] :
    throw(ArgumentError("unknown problem $name; valid: $(join(sort!(collect(keys(PROBLEMS))), ", "))"))

check_order(order) = order >= 1 ||
    throw(ArgumentError("order K must be an integer >= 1, got $order (as in the JAX backend)"))

# ---- Taylor coefficients along the flow ------------------------------------------------------

"""
    taylor_coefficients(f, z, t, order) -> Vector{Vector{Float64}}

Normalized coefficients `c[j][k+1] = zⱼ⁽ᵏ⁾(t)/k!`, `k = 0…order`, of the solution of
`dz/dt = f(z, t)` through `(t, z)`: coefficient `k + 1` of `z` is coefficient `k` of `f(z, t)`
divided by `k + 1` (the recurrence of TaylorIntegration.jl's `jetcoeffs!`).

As in `jetcoeffs!`, step `k` evaluates `f` on series truncated at order `k`: only the known
coefficients `0…k` enter, so the cost is Σₖ O(k²) = O(K³/3) rather than K·O(K²).
"""
function taylor_coefficients(f, z::AbstractVector{<:Real}, t::Real, order::Integer)
    check_order(order)
    c = [zeros(order + 1) for _ in eachindex(z)]
    for j in eachindex(z)
        c[j][1] = z[j]
    end
    for k in 0:order-1
        tcoeffs = zeros(k + 1)
        tcoeffs[1] = t
        k >= 1 && (tcoeffs[2] = 1.0)
        tt = Taylor1(tcoeffs, k)
        x = [Taylor1(c[j][1:k+1], k) for j in eachindex(z)]
        dx = f(x, tt)
        for j in eachindex(z)
            c[j][k+2] = coeff(dx[j], k) / (k + 1)
        end
    end
    return c
end

# A component of f that does not depend on (z, t) comes back as a plain number.
coeff(x::Taylor1, k::Integer) = getcoeff(x, k)
coeff(x::Real, k::Integer) = k == 0 ? Float64(x) : 0.0

# k! as a Float64: Int's factorial overflows for k > 20, and JAX accepts any K.
float_factorial(k::Integer) = prod(Float64, 1:k; init=1.0)

"""
    taylor_derivatives(f, Z, t, order) -> Array (d, batch, order)

Raw total derivatives `dᵏz/dtᵏ`, `k = 1…order`, for each column of `Z` (`d × batch`).
"""
function taylor_derivatives(f, Z::AbstractMatrix, t::Real, order::Integer)
    check_order(order)
    d, batch = size(Z)
    out = Array{Float64}(undef, d, batch, order)
    for b in 1:batch
        c = taylor_coefficients(f, view(Z, :, b), t, order)
        for k in 1:order, j in 1:d
            out[j, b, k] = float_factorial(k) * c[j][k+1]
        end
    end
    return out
end

# ---- solves ---------------------------------------------------------------------------------

const ALGORITHMS = Dict{String,Any}(
    "dopri5" => DP5, "DP5" => DP5, "tsit5" => Tsit5, "Tsit5" => Tsit5,
    "bosh3" => BS3, "BS3" => BS3, "Vern7" => Vern7, "Vern9" => Vern9, "VCABM" => VCABM,
)

algorithm(name::AbstractString) = haskey(ALGORITHMS, name) ? ALGORITHMS[name]() :
    throw(ArgumentError("unknown algorithm $name; valid: $(join(sort!(collect(keys(ALGORITHMS))), ", "))"))

"""
    SolveFailed(alg, retcode, t, t0, t1)

OrdinaryDiffEq stopped before `t1` (`retcode` is not a success): its partial solution would
otherwise pass for the answer.
"""
struct SolveFailed <: Exception
    alg::String
    retcode::String
    t::Float64
    t0::Float64
    t1::Float64
end

Base.showerror(io::IO, e::SolveFailed) = print(io,
    "SolveFailed: ", e.alg, " stopped with retcode ", e.retcode, " (last time reached ", e.t,
    ", asked for [", e.t0, ", ", e.t1, "]); OrdinaryDiffEq returned a partial solution. ",
    "Loosen the tolerances, raise maxiters, or check the dynamics for blow-up.")

check_retcode(sol, alg, t0, t1) = successful_retcode(sol) ||
    throw(SolveFailed(string(alg), string(sol.retcode), Float64(sol.t[end]), Float64(t0), Float64(t1)))

# The batch is one ODE system, as in the JAX backend, so error norms and NFE are comparable.
function batched_field(f, d, batch)
    return function (du, u, p, t)
        Z = reshape(u, d, batch)
        dZ = reshape(du, d, batch)
        for b in 1:batch
            dZ[:, b] .= f(view(Z, :, b), t)
        end
        return nothing
    end
end

"""
    solve_ode(f, Z0, ts, alg; reltol, abstol, maxiters) -> (Y, nf, naccept, nreject)

`Y` is `d × batch × length(ts)`, the states at `ts` (increasing, or decreasing for a solve
backward in time); the counts are `sol.stats`'s. Throws `SolveFailed` unless the solve reached
`last(ts)`.
"""
function solve_ode(f, Z0::AbstractMatrix, ts::AbstractVector, alg::AbstractString;
                   reltol=1e-8, abstol=1e-8, maxiters=100_000)
    d, batch = size(Z0)
    tsv = collect(Float64, ts)
    length(tsv) >= 2 || throw(ArgumentError("need at least two times, got $(length(tsv))"))
    prob = ODEProblem(batched_field(f, d, batch), vec(Matrix{Float64}(Z0)), (first(tsv), last(tsv)))
    sol = solve(prob, algorithm(alg); reltol=reltol, abstol=abstol, saveat=tsv, maxiters=maxiters)
    check_retcode(sol, alg, first(tsv), last(tsv))
    length(sol.u) == length(tsv) ||
        error("OrdinaryDiffEq saved $(length(sol.u)) states for $(length(tsv)) requested times")
    Y = reshape(reduce(hcat, sol.u), d, batch, length(sol.u))
    return (Y, sol.stats.nf, sol.stats.naccept, sol.stats.nreject)
end

"""
    rk_integral(f, Z0, t0, t1, order; alg, reltol, abstol, maxiters) -> Vector (batch)

`R_K = ∫ (1/d)‖dᴷz/dtᴷ‖² |dt|` per example, integrated in the same solve as the state (also
backward in time, t1 < t0). Throws `SolveFailed` unless the solve reached `t1`.
"""
function rk_integral(f, Z0::AbstractMatrix, t0::Real, t1::Real, order::Integer;
                     alg="dopri5", reltol=1e-8, abstol=1e-8, maxiters=100_000)
    check_order(order)
    d, batch = size(Z0)
    n = d * batch
    direction = sign(t1 - t0)
    scale = abs2(float_factorial(order)) / d
    function aug!(du, u, p, t)
        for b in 1:batch
            c = taylor_coefficients(f, view(u, (b-1)*d+1:b*d), t, order)
            for j in 1:d
                du[(b-1)*d+j] = c[j][2]  # coefficient 1 of z is f(z, t)
            end
            du[n+b] = direction * scale * sum(abs2(c[j][order+1]) for j in 1:d)
        end
        return nothing
    end
    u0 = vcat(vec(Matrix{Float64}(Z0)), zeros(batch))
    sol = solve(ODEProblem(aug!, u0, (Float64(t0), Float64(t1))), algorithm(alg);
                reltol=reltol, abstol=abstol, save_everystep=false, maxiters=maxiters)
    check_retcode(sol, alg, t0, t1)
    return sol.u[end][n+1:end]
end

# ---- precompilation: the calls the Python backend makes, so a first call does not compile ----

@setup_workload begin
    W1, b1 = [0.1 0.2 0.3; -0.2 0.1 0.4], [0.0, 0.1]
    W2, b2 = [0.3 -0.1 0.2; 0.2 0.2 -0.1], [0.05, 0.0]
    Z = [0.5 0.1; -0.2 0.3]
    @compile_workload begin
        for act in keys(ACTIVATIONS)
            m = MLP(act, W1, b1, W2, b2)
            taylor_derivatives(m, Z, 0.1, 3)
        end
        m = MLP("tanh", W1, b1, W2, b2)
        solve_ode(m, Z, [0.0, 0.5], "dopri5")
        solve_ode(m, Z, [0.0, 0.5], "tsit5")
        rk_integral(m, Z, 0.0, 0.5, 2)
        taylor_derivatives(problem("lotka_volterra"), Z, 0.0, 3)
    end
end

end # module
