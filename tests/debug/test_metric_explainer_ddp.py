"""`trainer.explain_metrics()` in a 2-process gloo run (ddp_spawn): `sync_dist`, `rank_zero_only`, batch-size
weighted synced means, and the explanation the launching process gives of what rank 0 handed back."""

import json

import pytest

from helpers.explain_modules import masked, snapshot
from helpers.log_fixtures import log_trainer
from helpers.tiny import make_loader

pytestmark = pytest.mark.distributed


SYNC_SNAPSHOT = snapshot("""
    Metrics explained: rank {rank} of 2, epoch 1, global step 4

    rank_mean  logged in `training_step` by RankLoggingModule.training_step (explain_modules.py:<line>)
        call       self.log('rank_mean', ..., on_step=True, on_epoch=True, sync_dist=True)
        when       on_step=True (given), on_epoch=True (given)
        reduction  epoch value = mean weighted by batch size (batch size inferred from each batch; total weight 32 this epoch)
        sync       sync_dist=True, across the default group (all ranks): each step value = mean of the ranks' values; epoch value = mean over every rank's samples (sum of value x batch size / sum of batch sizes)
        names      on_step and on_epoch: 'rank_mean_step' (step value), 'rank_mean_epoch' (epoch value), and 'rank_mean' for callbacks (the newer of the two)
        keys       rank_mean_step  = <v>  -> logger (no logger configured: trainer.logged_metrics only), callbacks
                   rank_mean_epoch = <v>  -> logger (no logger configured: trainer.logged_metrics only), callbacks
                   rank_mean       = <v>  -> callbacks

    rank_max  logged in `training_step` by RankLoggingModule.training_step (explain_modules.py:<line>)
        call       self.log('rank_max', ..., on_step=False, on_epoch=True, reduce_fx='max', sync_dist=True)
        when       on_step=False (given), on_epoch=True (given)
        reduction  epoch value = maximum of the values logged this epoch (batch size not used)
        sync       sync_dist=True, across the default group (all ranks): epoch value = max of the ranks' epoch values
        names      'rank_max' (epoch value)
        keys       rank_max = <v>  -> logger (no logger configured: trainer.logged_metrics only), callbacks

    rank_own  logged in `training_step` by RankLoggingModule.training_step (explain_modules.py:<line>)
        call       self.log('rank_own', ..., on_step=False, on_epoch=True)
        when       on_step=False (given), on_epoch=True (given)
        reduction  epoch value = mean weighted by batch size (batch size inferred from each batch; total weight 32 this epoch)
        sync       not synced (sync_dist=False): each rank keeps its own value
        names      'rank_own' (epoch value)
        keys       rank_own = <v>  -> logger (no logger configured: trainer.logged_metrics only), callbacks

    rank_weighted  logged in `training_step` by RankLoggingModule.training_step (explain_modules.py:<line>)
        call       self.log('rank_weighted', ..., on_step=False, on_epoch=True, sync_dist=True, batch_size={batch_size})
        when       on_step=False (given), on_epoch=True (given)
        reduction  epoch value = mean weighted by batch size (batch_size passed to self.log, {batch_size} in its first call; total weight {weight} this epoch)
        sync       sync_dist=True, across the default group (all ranks): epoch value = mean over every rank's samples (sum of value x batch size / sum of batch sizes)
        names      'rank_weighted' (epoch value)
        keys       rank_weighted = <v>  -> logger (no logger configured: trainer.logged_metrics only), callbacks

    rank_zero  logged in `training_step` by RankLoggingModule.training_step (explain_modules.py:<line>)
        call       self.log('rank_zero', ..., on_step=False, on_epoch=True, sync_dist=True, rank_zero_only=True)
        when       on_step=False (given), on_epoch=True (given)
        reduction  epoch value = mean weighted by batch size (batch size inferred from each batch; total weight 32 this epoch)
        sync       never (rank_zero_only=True: logged by rank 0 alone, a collective would wait for the others)
        names      'rank_zero' (epoch value)
        keys       rank_zero = <v>  -> logger (no logger configured: trainer.logged_metrics only), callbacks
""")


def test_sync_dist_in_a_two_process_run(tmp_path, spawn_env, spawn_time_limit, capfd):
    """2 gloo processes (ddp_spawn): each rank explains its own metrics; the launching process explains what
    rank 0 handed back."""
    from helpers.explain_modules import RankLoggingModule

    trainer = log_trainer(tmp_path, devices=2, strategy="ddp_spawn")
    trainer.fit(RankLoggingModule(str(tmp_path)), make_loader(64))
    for rank in (0, 1):
        text, values = (tmp_path / f"explain_rank{rank}.txt").read_text().rsplit("\n", 1)
        assert masked(text) == SYNC_SNAPSHOT.format(rank=rank, batch_size=1 + 2 * rank, weight=4 * (1 + 2 * rank))
        values = json.loads(values)
        assert values["rank_mean_step"] == values["rank_mean_epoch"] == pytest.approx(0.5)
        assert values["rank_max"] == pytest.approx(1.0)
        assert values["rank_own"] == values["rank_zero"] == pytest.approx(rank)
        # Rank 1's values weigh 3, rank 0's 1 (Lightning 2.6.6 gives 0.75 too).
        assert values["rank_weighted"] == pytest.approx(0.75)

    explanation = trainer.explain_metrics()
    entry = explanation["rank_mean"]
    assert entry.notes == ["logged in the spawned processes; rank 0 handed back its callback_metrics and this record"]
    assert [(produced.key, produced.destinations) for produced in entry.produced] == [
        ("rank_mean_step", ["callbacks"]), ("rank_mean_epoch", ["callbacks"]), ("rank_mean", ["callbacks"])]
    assert entry.sync == ("sync_dist=True, across the default group (all ranks): each step value = mean of the "
                          "ranks' values; epoch value = mean over every rank's samples (sum of value x batch size / "
                          "sum of batch sizes)")
    assert explanation["rank_own"].produced[0].value == pytest.approx(0.0)
    # Printed on global rank zero only: by spawned rank 0 and by the launching process.
    printed = capfd.readouterr().out
    assert printed.count("Metrics explained: rank 0 of 2") == 2 and "rank 1 of 2" not in printed
