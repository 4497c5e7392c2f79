// The plasticity_rl `schema` model (src/plasticity_rl/inference/model.py), written in Stan for
// benchmarks/compare.py. Same priors, same unconstrained parameterisation, same likelihood.
//
// Python precomputes everything that does not depend on the parameters (benchmarks/compare.py,
// `peer_arrays`): the per-arm acute gate, the dose times and amounts, the everyday outcomes, the
// corrective sessions (one row per patient and session step), the recorded EMA ratings and visit
// scores (missing ones are left out), and each visit's D + E offsets. This program implements the
// parameter transforms, the plasticity drive g(k_j) from the sampled window length tau_k (gamma
// kernel, src/plasticity_rl/plasticity.py), the belief recurrence and the observation densities.
//
// Every density is written as `target += *_lpdf(...)` so that constants are kept: log_prob with
// the Jacobian then equals minus NumPyro's potential energy exactly (checked by `compare.py --check`).
data {
  int<lower=1> N;                      // patients
  int<lower=1> T;                      // steps
  int<lower=1> n_arms;
  int<lower=1> n_max;                  // corrective slots per session
  array[N] int<lower=1, upper=n_arms> arm;
  int<lower=1> n_dose;                 // doses per arm (padded with amount 0)
  vector[T] t_hours;                   // start of each step
  matrix[n_arms, n_dose] dose_hours;
  matrix[n_arms, n_dose] dose_amounts;
  real<lower=0> gamma_shape;           // the kernel's shape n (fixed)
  real<lower=0> k_max;                 // saturation: g(k) = k_max tanh(k / k_max)
  matrix[n_arms, T] gate;              // acute drug state per arm
  array[N, T] int<lower=0, upper=1> everyday;
  int<lower=0> n_sess;                 // (patient, step) pairs with corrective outcomes
  array[N, T] int<lower=0, upper=n_sess> sess_id;  // row of the session at (i, t), 0 if none
  array[n_sess] int<lower=1, upper=n_max> sess_n;
  matrix[n_sess, n_max] sess_c;
  int<lower=0> n_ema;                  // recorded EMA ratings
  array[n_ema] int<lower=1, upper=N> ema_i;
  array[n_ema] int<lower=1, upper=T + 1> ema_s;    // column of V_pad (1 = V0, t + 1 = after step t)
  vector<lower=0, upper=1>[n_ema] ema_y;
  int<lower=0> n_vis;                  // recorded visit scores, uncensored
  array[n_vis] int<lower=1, upper=N> vis_i;
  array[n_vis] int<lower=1, upper=T + 1> vis_s;
  vector[n_vis] vis_y;
  vector[n_vis] vis_offset;            // D + E
  array[n_vis] int<lower=0, upper=1> vis_treated;
  int<lower=0> n_cens;                 // scores at 0 or 60: censored (tail probability)
  array[n_cens] int<lower=1, upper=N> cens_i;
  array[n_cens] int<lower=1, upper=T + 1> cens_s;
  array[n_cens] int<lower=-1, upper=1> cens_side;  // -1: at the floor, +1: at the ceiling
  vector[n_cens] cens_offset;
  array[n_cens] int<lower=0, upper=1> cens_treated;
  real score_lo;
  real score_hi;
  real m_max;
  real mu_o;
  real V0_offset;
  // priors (model.py)
  vector[3] mu_loc;                    // logit_alpha0, A, logit_S0
  vector[3] mu_sd;
  real tau_scale;
  real logit_kappa_loc;
  real logit_epsilon_loc;
  real logit_sd;
  real omega_a;
  real omega_b;
  real log_phi_loc;
  real log_sd_phi;
  real log_sb_loc;
  real log_st_loc;
  real log_sd_sigma;
  real log_tau_k_loc;
  real log_sd_window;
  real eps_v;                          // V clipped to [eps_v, 1 - eps_v] in the Beta
  real alpha_max;
}
parameters {
  real mu_logit_alpha0;
  real<lower=0> tau_logit_alpha0;
  vector[N] z_logit_alpha0;
  real mu_A;
  real<lower=0> tau_A;
  vector[N] z_A;
  real mu_logit_S0;
  real<lower=0> tau_logit_S0;
  vector[N] z_logit_S0;
  real<lower=0, upper=1> kappa;
  real<lower=0, upper=1> epsilon;
  real<lower=0, upper=1> omega;
  real<lower=0> phi;
  real<lower=0> sigma_baseline;
  real<lower=0> sigma_treated;
  real<lower=0> tau_k_hours;
}
model {
  vector[N] la0 = mu_logit_alpha0 + tau_logit_alpha0 * z_logit_alpha0;
  vector[N] boost = mu_A + tau_A * z_A;
  vector[N] lS0 = mu_logit_S0 + tau_logit_S0 * z_logit_S0;
  matrix[N, T + 1] V_pad;
  matrix[n_arms, T] g_k;  // saturated drive per arm: plasticity.arm_drive with the gamma kernel

  for (a in 1:n_arms) {
    for (t in 1:T) {
      real k = 0;
      for (d in 1:n_dose) {
        real tau = t_hours[t] - dose_hours[a, d];
        if (tau > 0)  // K(tau) = (tau / (n tau_k))^n exp(n - tau / tau_k), 0 before the dose
          k += dose_amounts[a, d] * exp(gamma_shape * log(tau / (gamma_shape * tau_k_hours)) + gamma_shape - tau / tau_k_hours);
      }
      g_k[a, t] = k_max * tanh(k / k_max);
    }
  }

  // priors, constants kept
  target += normal_lpdf(mu_logit_alpha0 | mu_loc[1], mu_sd[1]);
  target += normal_lpdf(tau_logit_alpha0 | 0, tau_scale) + log2();
  target += std_normal_lpdf(z_logit_alpha0);
  target += normal_lpdf(mu_A | mu_loc[2], mu_sd[2]);
  target += normal_lpdf(tau_A | 0, tau_scale) + log2();
  target += std_normal_lpdf(z_A);
  target += normal_lpdf(mu_logit_S0 | mu_loc[3], mu_sd[3]);
  target += normal_lpdf(tau_logit_S0 | 0, tau_scale) + log2();
  target += std_normal_lpdf(z_logit_S0);
  // logit-normal: Normal(logit x) - log x - log(1 - x)
  target += normal_lpdf(logit(kappa) | logit_kappa_loc, logit_sd) - log(kappa) - log1m(kappa);
  target += normal_lpdf(logit(epsilon) | logit_epsilon_loc, logit_sd) - log(epsilon) - log1m(epsilon);
  target += beta_lpdf(omega | omega_a, omega_b);
  target += lognormal_lpdf(phi | log_phi_loc, log_sd_phi);
  target += lognormal_lpdf(sigma_baseline | log_sb_loc, log_sd_sigma);
  target += lognormal_lpdf(sigma_treated | log_st_loc, log_sd_sigma);
  target += lognormal_lpdf(tau_k_hours | log_tau_k_loc, log_sd_window);

  // the belief recurrence, one patient at a time
  for (i in 1:N) {
    int a = arm[i];
    real S = inv_logit(lS0[i]);
    real a0 = fmin(inv_logit(la0[i]), alpha_max);
    real learn = 1 - kappa;
    // start V at its quasi-equilibrium between S0 and the everyday evidence (BeliefModel.initial)
    real V = (learn * a0 * mu_o + kappa * S) / (learn * (a0 * mu_o + a0 * (1 - mu_o)) + kappa) + V0_offset;
    V = fmin(fmax(V, 1e-4), 1 - 1e-4);
    V_pad[i, 1] = V;
    for (t in 1:T) {
      real al = (1 - gate[a, t]) * fmin(inv_logit(la0[i] + boost[i] * g_k[a, t]), alpha_max);
      int sid = sess_id[i, t];
      if (sid > 0) {  // a session's n corrective outcomes, in order, before the everyday event
        int n = sess_n[sid];
        real keep_v = 1 - al;
        real keep_s = 1 - omega * al;
        real add_v = 0;
        real add_s = 0;
        for (k in 1:n) {
          add_v += (1 - keep_v) * pow(keep_v, n - k) * sess_c[sid, k];
          add_s += (1 - keep_s) * pow(keep_s, n - k) * sess_c[sid, k];
        }
        V = pow(keep_v, n) * V + add_v;
        S = pow(keep_s, n) * S + add_s;
      }
      {
        real o = everyday[i, t];
        real V_new = (1 - kappa) * (V + al * (o - V)) + kappa * S;  // learn, then relax toward S
        S = S + epsilon * al * (o - S);
        V = V_new;
      }
      V_pad[i, t + 1] = V;
    }
  }

  // EMA: Beta(V phi, (1 - V) phi) of V at the end of the day
  if (n_ema > 0) {
    vector[n_ema] v;
    for (m in 1:n_ema) v[m] = fmin(fmax(V_pad[ema_i[m], ema_s[m]], eps_v), 1 - eps_v);
    target += beta_lpdf(ema_y | v * phi, (1 - v) * phi);
  }
  // visits: Normal(m_max (1 - V) - D - E, sigma), censored at the ends of the score range
  if (n_vis > 0) {
    vector[n_vis] mean_v;
    vector[n_vis] sd_v;
    for (m in 1:n_vis) {
      mean_v[m] = m_max * (1 - V_pad[vis_i[m], vis_s[m]]) - vis_offset[m];
      sd_v[m] = vis_treated[m] ? sigma_treated : sigma_baseline;
    }
    target += normal_lpdf(vis_y | mean_v, sd_v);
  }
  for (m in 1:n_cens) {
    real mean_c = m_max * (1 - V_pad[cens_i[m], cens_s[m]]) - cens_offset[m];
    real sd_c = cens_treated[m] ? sigma_treated : sigma_baseline;
    if (cens_side[m] < 0)
      target += std_normal_lcdf((score_lo - mean_c) / sd_c);
    else
      target += std_normal_lcdf((mean_c - score_hi) / sd_c);
  }
}
