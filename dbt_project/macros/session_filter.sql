{#- The rows of the session range Dagster runs (vars session_start/session_end,
    from the partition key or range); every session when unset. Session keys are
    YYYY-MM-DD, so string comparison is date order. -#}
{% macro session_filter(column='partition_key') -%}
  {%- set start = var('session_start') -%}
  {%- set end = var('session_end') or start -%}
  {%- if start -%}
    {{ column }} between '{{ start }}' and '{{ end }}'
  {%- else -%}
    true
  {%- endif -%}
{%- endmacro %}
