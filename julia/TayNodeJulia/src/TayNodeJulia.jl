"""
    TayNodeJulia

The Julia side of taynode's `julia` backend: the same three questions the JAX backend answers,
for a portable neural ODE (`MLP`) or a named test problem, on plain arrays.

States arrive column-major as `d × batch` matrices (Python passes the transpose of its
`(batch, d)` array, which is a zero-copy view), and results leave as `d × batch × n` arrays,
which Python reads back as a zero-copy `(n, batch, d)` view.

Dynamics are callables `f(z, t)` on one example `z::AbstractVector`, generic enough to take
`Taylor1` numbers.
"""
module TayNodeJulia

using TaylorSeries
using OrdinaryDiffEq

export MLP, problem, taylor_derivatives, solve_ode, rk_integral

# ---- dynamics -------------------------------------------------------------------------------

sigmoid(x) = inv(one(x) + exp(-x))
softplus(x) = log(one(x) + exp(x))
relu(x) = constant_term(x) > 0 ? x : zero(x)
gelu(x) = x * (one(x) + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3))) / 2  # jax.nn.gelu's default
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
    haskey(ACTIVATIONS, activation) || throw(ArgumentError("unknown activation $activation"))
    iseven(length(params)) || throw(ArgumentError("expected weight/bias pairs, got $(length(params)) arrays"))
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
    "quadratic" => (z, t) -> z .^ 2,
    "lotka_volterra" => (z, t) -> [1.5 * z[1] - z[1] * z[2], -3.0 * z[2] + z[1] * z[2]],
    "van_der_pol" => (z, t) -> [z[2], (1 - z[1]^2) * z[2] - z[1]],
    "time_linear" => (z, t) -> t .* z,
)

problem(name::AbstractString) = haskey(PROBLEMS, name) ? PROBLEMS[name] :
    throw(ArgumentError("unknown problem $name"))

# ---- Taylor coefficients along the flow ------------------------------------------------------

"""
    taylor_coefficients(f, z, t, order)

Normalized coefficients `x[j][k] = zⱼ⁽ᵏ⁾(t)/k!`, `k = 0…order`, of the solution of
`dz/dt = f(z, t)` through `(t, z)`: coefficient `k + 1` of `z` is coefficient `k` of `f(z, t)`
divided by `k + 1` (the recurrence of TaylorIntegration.jl's `jetcoeffs!`).
"""
function taylor_coefficients(f, z::AbstractVector{<:Real}, t::Real, order::Integer)
    tt = t + Taylor1(Float64, order)
    x = [Taylor1([Float64(zj)], order) for zj in z]
    for k in 0:order-1
        dx = f(x, tt)
        for j in eachindex(x)
            x[j][k+1] = dx[j][k] / (k + 1)
        end
    end
    return x
end

"""
    taylor_derivatives(f, Z, t, order) -> Array (d, batch, order)

Raw total derivatives `dᵏz/dtᵏ`, `k = 1…order`, for each column of `Z` (`d × batch`).
"""
function taylor_derivatives(f, Z::AbstractMatrix, t::Real, order::Integer)
    d, batch = size(Z)
    out = Array{Float64}(undef, d, batch, order)
    for b in 1:batch
        x = taylor_coefficients(f, view(Z, :, b), t, order)
        for k in 1:order, j in 1:d
            out[j, b, k] = factorial(k) * x[j][k]
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
    solve_ode(f, Z0, ts, alg; reltol, abstol) -> (Y, nf, naccept, nreject)

`Y` is `d × batch × length(ts)`; the counts are `sol.stats`'s.
"""
function solve_ode(f, Z0::AbstractMatrix, ts::AbstractVector, alg::AbstractString;
                   reltol=1e-8, abstol=1e-8)
    d, batch = size(Z0)
    tsv = collect(Float64, ts)
    prob = ODEProblem(batched_field(f, d, batch), vec(Matrix{Float64}(Z0)), (first(tsv), last(tsv)))
    sol = solve(prob, algorithm(alg); reltol=reltol, abstol=abstol, saveat=tsv)
    Y = reshape(reduce(hcat, sol.u), d, batch, length(sol.u))
    return (Y, sol.stats.nf, sol.stats.naccept, sol.stats.nreject)
end

"""
    rk_integral(f, Z0, t0, t1, order; alg, reltol, abstol) -> Vector (batch)

`∫ (1/d)‖dᴷz/dtᴷ‖² |dt|` per example, integrated in the same solve as the state.
"""
function rk_integral(f, Z0::AbstractMatrix, t0::Real, t1::Real, order::Integer;
                     alg="dopri5", reltol=1e-8, abstol=1e-8)
    d, batch = size(Z0)
    n = d * batch
    direction = sign(t1 - t0)
    function aug!(du, u, p, t)
        for b in 1:batch
            z = u[(b-1)*d+1:b*d]
            x = taylor_coefficients(f, z, t, order)
            du[(b-1)*d+1:b*d] .= f(z, t)
            du[n+b] = direction * sum(abs2(factorial(order) * x[j][order]) for j in 1:d) / d
        end
        return nothing
    end
    u0 = vcat(vec(Matrix{Float64}(Z0)), zeros(batch))
    sol = solve(ODEProblem(aug!, u0, (Float64(t0), Float64(t1))), algorithm(alg);
                reltol=reltol, abstol=abstol, save_everystep=false)
    return sol.u[end][n+1:end]
end

end # module
